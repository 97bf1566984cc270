#!/usr/bin/env python3
"""Lists C++ functions longer than a limit (default 60 lines), longest first.

A function is a definition starting at column 0 whose line ends with '{'
and that ends at the next line that is exactly '}' (Google style, as
.clang-format lays the code out). Lambdas and nested classes count towards
their enclosing function.

usage: function_lengths.py [--limit N] [--fail] PATH...   (files or directories)
"""
import argparse
import os
import re
import sys

START = re.compile(r"^[A-Za-z_~][^;#/]*\)\s*(const)?\s*(noexcept)?\s*(override)?\s*(->[^{]*)?\{\s*$")


def functions(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        if START.match(lines[i]) and not lines[i].startswith(("namespace", "class ", "struct ")):
            name = lines[i].split("(")[0].split()[-1]
            for j in range(i + 1, len(lines)):
                if lines[j] == "}":
                    yield name, i + 1, j - i + 1
                    i = j
                    break
        i += 1


def sources(paths):
    for p in paths:
        if os.path.isfile(p):
            yield p
            continue
        for root, _, files in os.walk(p):
            for f in files:
                if f.endswith((".cc", ".cpp")):
                    yield os.path.join(root, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--fail", action="store_true", help="exit 1 if any function is over the limit")
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()
    long = [(n, path, name, line) for path in sources(args.paths)
            for name, line, n in functions(path) if n > args.limit]
    for n, path, name, line in sorted(long, reverse=True):
        print(f"{n:5d}  {path}:{line}  {name}")
    print(f"{len(long)} function(s) over {args.limit} lines")
    return 1 if args.fail and long else 0


if __name__ == "__main__":
    sys.exit(main())
