"""I deleted my big list: why didn't memory go down?

This script builds N objects of one kind, deletes them in steps and shows, after every step,
how much memory the process holds (VmRSS, from the kernel) and how many pymalloc arenas the
interpreter holds (from ``sys._debugmallocstats()``).

Run it by hand (any CPython 3.8 or newer):

    python3 retention.py                         # 1,000,000 floats
    python3 retention.py --kind tuples --n 200000
    python3 retention.py --survivors spread      # keep 1 object in 1000, spread out
    PYTHONMALLOC=malloc python3 retention.py     # objects from libc malloc, not pymalloc

The phases (the default, --survivors none):

    baseline      nothing built yet
    build         N objects in a list (for --kind dict: a dict of N ints)
    del-half      del lst[::2]            (every other object freed)
    refill        N/2 new objects while the other half still lives
    del-all       del lst                 (every object freed)
    gc-collect    gc.collect()
    malloc-trim   libc's malloc_trim(0) through ctypes

With --survivors spread|packed, after build one object in 1000 is kept (spread: every 1000th,
so every arena keeps some; packed: the first N/1000, so they share one or two arenas) and the
others are deleted: phases baseline, build, keep-1-in-1000, gc-collect, malloc-trim.

arenalab (``arenalab cpython --part retention``) runs this script with --barrier DIR: at each
phase the script writes the interpreter's statistics to DIR/<phase>.txt, prints the phase name
and waits for a line on stdin, while arenalab reads the process's memory from
/proc/<pid>/smaps_rollup from the outside. The script keeps only raw text while it runs: parsing
the statistics into Python objects would itself allocate, and pin, the arenas being measured.
"""

import argparse
import ctypes
import gc
import os
import sys

KINDS = ("floats", "ints", "tuples", "bytes", "dict")


def build(kind, n):
    """N objects of one kind, all in one size class (the container itself is large and comes
    from malloc, not pymalloc)."""
    if kind == "floats":
        # A float is 24 bytes: pymalloc's 32-byte class.
        return [i + 0.5 for i in range(n)]
    if kind == "ints":
        # Ints from 1000 up to 2**30 have one 30-bit digit: 28 bytes, also the 32-byte class
        # (-5..256 are cached, so they would not be allocated).
        return [i + 1000 for i in range(n)]
    if kind == "tuples":
        # A 2-tuple is 40 bytes plus a 16-byte GC header: the 64-byte class. Both items are the
        # same object, so only the tuples are allocated.
        x = object()
        return [(x, x) for _ in range(n)]
    if kind == "bytes":
        # 33 bytes of header plus 100 of data: the 144-byte class.
        return [i.to_bytes(100, "little") for i in range(n)]
    if kind == "dict":
        # N ints of 28 bytes as keys (and values); the hash table itself comes from malloc.
        return {i + 1000: None for i in range(n)}
    raise SystemExit(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


def malloc_trim():
    """libc's malloc_trim(0): give free heap memory back to the kernel (glibc only)."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Phases:
    """Reports each phase: by hand, prints VmRSS and the arena lines; under arenalab, dumps the
    statistics to a file and waits at a barrier."""

    def __init__(self, barrier_dir):
        self.dir = barrier_dir
        self.count = 0

    def __call__(self, name):
        self.count += 1
        if self.dir is None:
            self.by_hand(name)
            return
        path = os.path.join(self.dir, "%02d-%s.txt" % (self.count, name))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        saved = os.dup(2)
        # sys._debugmallocstats() writes to C's stderr (file descriptor 2), not sys.stderr.
        sys.stderr.flush()
        os.dup2(fd, 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(fd)
        sys.stdout.write("phase %s %s\n" % (name, path))
        sys.stdout.flush()
        if not sys.stdin.readline():
            os._exit(1)  # arenalab went away

    def by_hand(self, name):
        with open("/proc/self/status") as f:
            rss = [line.split(None, 1)[1].strip() for line in f if line.startswith("VmRSS")]
        r, w = os.pipe()
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(w, 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(w)
        with os.fdopen(r) as f:
            text = f.read()
        arenas = [line.split("=")[1].strip() for line in text.splitlines()
                  if line.startswith("# arenas allocated current")]
        print("%-14s VmRSS %-12s pymalloc arenas %s"
              % (name, rss[0] if rss else "?", arenas[0] if arenas else "(pymalloc off)"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", choices=KINDS, default="floats")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--survivors", choices=("none", "spread", "packed"), default="none")
    ap.add_argument("--barrier", metavar="DIR", help="arenalab's phase barrier (see above)")
    args = ap.parse_args()
    phase = Phases(args.barrier)
    n = args.n

    phase("baseline")
    lst = build(args.kind, n)
    phase("build")
    if args.survivors == "none":
        if args.kind == "dict":
            for k in range(1000, n + 1000, 2):
                del lst[k]
        else:
            del lst[::2]
        phase("del-half")
        if args.kind == "dict":
            lst.update({i + 1000 + n: None for i in range(n // 2)})
        else:
            lst.extend(build(args.kind, n // 2))
        phase("refill")
        del lst
        phase("del-all")
    else:
        if args.kind == "dict":
            keys = list(lst)
            step = keys[::1000] if args.survivors == "spread" else keys[: max(1, n // 1000)]
            keep = {k: None for k in step}
            del keys, step
        elif args.survivors == "spread":
            keep = lst[::1000]
        else:
            keep = lst[: max(1, n // 1000)]
        del lst
        phase("keep-1-in-1000")
    gc.collect()
    phase("gc-collect")
    malloc_trim()
    phase("malloc-trim")


if __name__ == "__main__":
    main()
