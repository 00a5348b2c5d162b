/*
 * roomname.c: the client-server spec's room name calculation (m.room.name,
 * then m.room.canonical_alias, then heroes, then "Empty Room") and Unicode
 * case folding for by_name sort keys. Folding uses the C library's
 * towlower() under the C.UTF-8 locale plus the full/special foldings that
 * simple lowercasing misses (ß, ẞ, final sigma, long s, Greek symbol forms).
 */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "api.h"
#include "util.h"

static const char *
hero_name(const struct hero *h)
{
	if (h->displayname != NULL && *h->displayname != '\0')
		return h->displayname;
	return h->user_id;
}

/* "A", "A and B", "A, B and C" */
static void
join_heroes(char *buf, size_t len, const struct hero *heroes, int n)
{
	buf[0] = '\0';
	for (int i = 0; i < n; i++) {
		const char *sep = i == 0 ? "" : i == n - 1 ? " and " : ", ";
		size_t l = strlen(buf);
		snprintf(buf + l, len - l, "%s%s", sep, hero_name(&heroes[i]));
	}
}

/*
 * The spec's room name: m.room.name, else the canonical alias, else up to
 * five heroes ("A, B and N others"), else "Empty Room".
 */
char *
room_name_calc(const char *name, const char *alias, const struct hero *heroes,
    int nheroes, long joined, long invited)
{
	char buf[1024], *list;
	long total = joined + invited;

	if (name != NULL && *name != '\0')
		return xstrdup(name);
	if (alias != NULL && *alias != '\0')
		return xstrdup(alias);
	if (nheroes <= 0)
		return xstrdup("Empty Room");
	if (nheroes > 5)
		nheroes = 5;
	if (total > 1 && total > nheroes + 1) {
		join_heroes(buf, sizeof(buf), heroes, nheroes);
		/* "A, B and 3 others": the last separator moves */
		list = xstrdup("");
		for (int i = 0; i < nheroes; i++) {
			char *n = xasprintf("%s%s%s", list, i ? ", " : "",
			    hero_name(&heroes[i]));
			free(list);
			list = n;
		}
		snprintf(buf, sizeof(buf), "%s and %ld other%s", list,
		    total - nheroes - 1, total - nheroes - 1 == 1 ? "" : "s");
		free(list);
		return xstrdup(buf);
	}
	join_heroes(buf, sizeof(buf), heroes, nheroes);
	if (total <= 1)
		return xasprintf("Empty Room (was %s)", buf);
	return xstrdup(buf);
}

/* Decodes one code point; returns its length, or 1 for a bad byte. */
static int
u8_decode(const unsigned char *s, unsigned *cp)
{
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0 && (s[1] & 0xc0) == 0x80) {
		*cp = ((s[0] & 0x1fu) << 6) | (s[1] & 0x3fu);
		return 2;
	}
	if ((s[0] & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 &&
	    (s[2] & 0xc0) == 0x80) {
		*cp = ((s[0] & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) |
		    (s[2] & 0x3fu);
		return 3;
	}
	if ((s[0] & 0xf8) == 0xf0 && (s[1] & 0xc0) == 0x80 &&
	    (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80) {
		*cp = ((s[0] & 0x07u) << 18) | ((s[1] & 0x3fu) << 12) |
		    ((s[2] & 0x3fu) << 6) | (s[3] & 0x3fu);
		return 4;
	}
	*cp = 0xfffd;
	return 1;
}

static size_t
u8_encode(unsigned cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static locale_t
fold_locale(void)
{
	static locale_t loc;

	if (loc == (locale_t)0) {
		loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
		if (loc == (locale_t)0)
			loc = newlocale(LC_CTYPE_MASK, "C.utf8", (locale_t)0);
	}
	return loc;
}

/* Case folding of one code point; may write two code points ("ss"). */
static int
fold_cp(unsigned cp, unsigned out[2])
{
	locale_t loc = fold_locale();

	switch (cp) {
	case 0x00df:	/* ß */
	case 0x1e9e:	/* ẞ */
		out[0] = out[1] = 's';
		return 2;
	case 0x017f:	/* ſ */
		out[0] = 's';
		return 1;
	case 0x03c2:	/* ς */
		out[0] = 0x03c3;
		return 1;
	case 0x03d0:
		out[0] = 0x03b2;
		return 1;
	case 0x03d1:
		out[0] = 0x03b8;
		return 1;
	case 0x03d5:
		out[0] = 0x03c6;
		return 1;
	case 0x03d6:
		out[0] = 0x03c0;
		return 1;
	case 0x03f0:
		out[0] = 0x03ba;
		return 1;
	case 0x03f1:
		out[0] = 0x03c1;
		return 1;
	case 0x03f5:
		out[0] = 0x03b5;
		return 1;
	case 0x1e9b:
		out[0] = 0x1e61;
		return 1;
	}
	if (cp < 0x80) {
		out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
		return 1;
	}
	out[0] = loc != (locale_t)0 ? (unsigned)towlower_l((wint_t)cp, loc) :
	    cp;
	/* characters whose lowercase differs from their fold (Cherokee) */
	if (cp >= 0x13a0 && cp <= 0x13f5)
		out[0] = cp;
	else if (cp >= 0x13f8 && cp <= 0x13fd)
		out[0] = cp - 8;
	else if (cp >= 0xab70 && cp <= 0xabbf)
		out[0] = cp - 0xab70 + 0x13a0;
	return 1;
}

char *
casefold(const char *s)
{
	size_t len = strlen(s), o = 0;
	char *out = xmalloc(len * 3 + 8);
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		unsigned cp, f[2];
		int n;

		p += u8_decode(p, &cp);
		n = fold_cp(cp, f);
		for (int i = 0; i < n; i++)
			o += u8_encode(f[i], out + o);
	}
	out[o] = '\0';
	return out;
}
