"""Seed workloads for `arenalab trace record`: python trace_seed.py WORKLOAD N.

Each workload allocates N objects, frees some of them in a pattern, and marks every phase with
`arenalab_trace.mark`, so that `arenalab trace replay` compares the model with the interpreter
after each step.

  floats    N floats: alloc all, delete every other, refill half, delete all, gc
  ints      the same with N ints (28-byte objects above the small-int cache)
  spread    N floats, keep every 64th: the survivors pin every arena
  packed    N floats, keep the first N/64: the survivors sit together
  mixed     dicts, tuples, strings and bytes of 1-600 bytes, every other one freed
"""

import gc
import sys

import arenalab_trace

mark = arenalab_trace.mark


def seed(make, n):
    mark("start")
    objs = [make(i) for i in range(n)]
    mark("allocated")
    del objs[::2]
    mark("deleted every other")
    objs.extend(make(i) for i in range(n // 4))
    mark("refilled half")
    del objs[:]
    mark("deleted all")
    gc.collect()
    mark("gc")


def survivors(n, keep):
    mark("start")
    objs = [float(i) for i in range(n)]
    mark("allocated")
    kept = keep(objs)
    del objs
    mark("survivors kept")
    gc.collect()
    mark("gc")
    del kept
    mark("all freed")


def mixed(n):
    mark("start")
    objs = []
    state = 12345
    for i in range(n):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        size = 1 + state % 600
        kind = i % 4
        if kind == 0:
            objs.append({j: j for j in range(size % 12)})
        elif kind == 1:
            objs.append(tuple(range(size % 40)))
        elif kind == 2:
            objs.append("s" * size)
        else:
            objs.append(b"b" * size)
    mark("allocated")
    del objs[::2]
    mark("deleted every other")
    del objs[:]
    mark("deleted all")
    gc.collect()
    mark("gc")


def main():
    workload = sys.argv[1] if len(sys.argv) > 1 else "floats"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    if workload == "floats":
        seed(lambda i: float(i), n)
    elif workload == "ints":
        seed(lambda i: i + (1 << 20), n)
    elif workload == "spread":
        survivors(n, lambda objs: objs[::64])
    elif workload == "packed":
        survivors(n, lambda objs: objs[: n // 64])
    elif workload == "mixed":
        mixed(n)
    else:
        raise SystemExit("unknown workload %r" % workload)


main()
