#!/usr/bin/env python3
"""Lists the groups of files in one folder that call each other in a loop.

Reads every .c file of the folders given (default: api accumulator poller
common proto), takes a function defined at the start of a line (the tree's
.clang-format puts the name of a top-level definition there) as owned by its
file, and counts a call from file A to a function owned by file B as an edge
A -> B (a name A defines itself is A's: static helpers share names). Prints each strongly connected component of two or more files, and
exits 1 when one spans more than --max files (used by tests: a loop of files
is a layering bug).
"""
import argparse
import os
import re
import sys

DEF = re.compile(r'^([a-z_][a-z0-9_]*)\(', re.M)
CALL = re.compile(r'\b([a-z_][a-z0-9_]*)\s*\(')
COMMENT = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"', re.S)


def graph(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith('.c'))
    text, owner, own = {}, {}, {}
    for f in files:
        with open(os.path.join(folder, f), encoding='utf-8') as fh:
            text[f] = COMMENT.sub(' ', fh.read())
        own[f] = set(DEF.findall(text[f]))
        for name in own[f]:
            owner.setdefault(name, f)
    edges = {f: set() for f in files}
    for f in files:
        for name in CALL.findall(text[f]):
            # a name the file defines itself is its own (static helpers
            # of the same name live in several files)
            g = f if name in own[f] else owner.get(name)
            if g and g != f:
                edges[f].add(g)
    return edges


def sccs(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('folders', nargs='*',
                    default=['api', 'accumulator', 'poller', 'common', 'proto'])
    ap.add_argument('--max', type=int, default=0,
                    help='fail when a loop spans more files than this')
    a = ap.parse_args()
    worst = 0
    for folder in a.folders:
        for comp in sccs(graph(folder)):
            worst = max(worst, len(comp))
            print('%s: %d files: %s' % (folder, len(comp), ' '.join(comp)))
    if a.max and worst > a.max:
        sys.exit(1)


if __name__ == '__main__':
    main()
