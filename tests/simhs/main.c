/*
 * main.c: syncv3-simhs, a simulated Matrix homeserver for tests,
 * benchmarks and the demo. Parses flags, builds the context, serves
 * until SIGTERM/SIGINT, then answers held requests and frees everything.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "simhs.h"

static void
usage(void)
{
	fprintf(stderr, "usage: syncv3-simhs [-dv] [-l host:port] "
	                "[-s server_name]\n");
	exit(1);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct simhs *ctx = arg;

	(void)what;
	log_debug(ctx, "signal %d: exiting", (int)sig);
	event_base_loopexit(ctx->base, NULL);
}

static void
simhs_init(struct simhs *ctx, const char *server_name, bool is_verbose)
{
	ctx->server_name = xstrdup(server_name);
	ctx->is_verbose = is_verbose;
	map_init(&ctx->users);
	map_init(&ctx->rooms);
	map_init(&ctx->tokens);
	map_init(&ctx->path_counts);
	TAILQ_INIT(&ctx->fails);
	TAILQ_INIT(&ctx->holds);
	if ((ctx->base = event_base_new()) == NULL) {
		log_warnx("event_base_new failed");
		exit(1);
	}
	longpoll_init(ctx);
}

static void
simhs_free(struct simhs *ctx)
{
	longpoll_shutdown(ctx);
	fail_shutdown(ctx);
	client_x_shutdown(ctx);
	http_shutdown(ctx);
	rooms_free(ctx);
	users_free(ctx);
	event_base_free(ctx->base);
	free(ctx->server_name);
}

int
main(int argc, char *argv[])
{
	const char *listen = getenv("SIMHS_LISTEN"), *server = "localhost";
	struct event *sigterm, *sigint;
	bool is_demo = false, is_verbose = false;
	struct simhs ctx = {0};
	int ch;

	if (listen == NULL || *listen == '\0')
		listen = SIMHS_DEFAULT_LISTEN;
	while ((ch = getopt(argc, argv, "dl:s:v")) != -1) {
		switch (ch) {
		case 'd':
			is_demo = true;
			break;
		case 'l':
			listen = optarg;
			break;
		case 's':
			server = optarg;
			break;
		case 'v':
			is_verbose = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || *server == '\0')
		usage();
	signal(SIGPIPE, SIG_IGN);
	simhs_init(&ctx, server, is_verbose);
	if (is_demo)
		scenario_demo(&ctx);
	if (http_init(&ctx, listen) < 0) {
		log_warnx("cannot listen on %s", listen);
		simhs_free(&ctx);
		return 1;
	}
	sigterm = evsignal_new(ctx.base, SIGTERM, signal_cb, &ctx);
	sigint = evsignal_new(ctx.base, SIGINT, signal_cb, &ctx);
	if (sigterm == NULL || sigint == NULL)
		return 1;
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	event_base_dispatch(ctx.base);
	event_free(sigterm);
	event_free(sigint);
	simhs_free(&ctx);
	return 0;
}
