"""Does a multiprocessing pool that is not closed keep its memory?

This script opens ``multiprocessing.Pool(4)``, gives each worker a task that leaves it holding
about M MiB (a bytes object kept in a module global, as a cache or a leak would), and then ends
the pool in one of several ways. Watch the workers with ``ps``/``top`` in another terminal, or
let arenalab sample them (``arenalab cpython --part pool``).

Run it by hand (any CPython 3.8 or newer):

    python3 pool.py --scenario open-idle            # pool open, parent idles: 4 x M MiB held
    python3 pool.py --scenario close-join --mib 64
    python3 pool.py --scenario killed-busy --start-method spawn
    # then, from another terminal: kill -9 <the parent's pid, printed first>

Scenarios (what the parent does after the workers hold their memory, on a line on stdin, or at
once when stdin is a terminal):

    open-idle       nothing: the pool stays open and idle until stdin closes
    close-join      pool.close(); pool.join()
    terminate       pool.terminate()
    with-block      leaves a `with Pool(...) as pool:` block (its __exit__ calls terminate())
    del-gc          del pool; gc.collect()  (no close: the pool's finalizer decides)
    maxtasks1       Pool(maxtasksperchild=1): each worker exits after its one task
    parent-exits    the parent returns from main with the pool still open
    killed-idle     the parent waits, idle workers; kill -9 it from outside
    killed-busy     the workers are in a long task (--busy-ms); kill -9 the parent from outside

Each worker renames itself ``alab-pyworker`` (``/proc/self/comm``) and the parent
``alab-pyparent``, so ``ps -C alab-pyworker`` finds them; arenalab identifies them that way.

When arenalab runs the script it sets ARENALAB_LIFELINE=<pid>:<start time>: then the parent and
every worker watch arenalab's process (a pidfd from Python 3.9 on, polling /proc before) and
leave the moment it is gone, so nothing outlives arenalab even when a scenario orphans workers on
purpose. Run by hand, the variable is absent and nothing is watched.
"""

import argparse
import gc
import json
import multiprocessing
import os
import select
import sys
import threading
import time

SCENARIOS = ("open-idle", "close-join", "terminate", "with-block", "del-gc", "maxtasks1",
             "parent-exits", "killed-idle", "killed-busy")

HELD = []  # what a worker keeps after its task: the memory the question is about


def name_process(name):
    """Sets this process's name as ps and /proc/PID/comm show it."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name)
    except OSError:
        pass


def start_time(pid):
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None if there is no such
    process. The command name may contain spaces, so fields are counted after the last ')'."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()[19].decode()


def start_lifeline():
    """If ARENALAB_LIFELINE=<pid>:<start time> is set, a daemon thread ends this process
    (os._exit(1)) as soon as that process is gone. The start time guards against a reused pid."""
    spec = os.environ.get("ARENALAB_LIFELINE")
    if not spec:
        return
    pid_text, started = spec.split(":")
    pid = int(pid_text)

    def watch():
        if hasattr(os, "pidfd_open"):  # Linux 5.3+, Python 3.9+
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                os._exit(1)
            if start_time(pid) != started:  # checked after opening: the pidfd is the right one
                os._exit(1)
            select.select([fd], [], [])  # readable once the process has ended
            os._exit(1)
        while start_time(pid) == started:
            time.sleep(0.05)
        os._exit(1)

    threading.Thread(target=watch, name="arenalab-lifeline", daemon=True).start()


def init_worker(counter):
    """Pool initializer: runs once in every worker."""
    global COUNTER
    COUNTER = counter
    name_process("alab-pyworker")
    start_lifeline()


def hold(mib, workers, busy_ms):
    """A task: allocate M MiB (written, so resident) and keep it; wait until every worker has
    taken one task (a worker in a task takes no other, so the tasks land on distinct workers);
    then, for killed-busy, stay busy."""
    HELD.append(b"\x5a" * (mib << 20))
    with COUNTER.get_lock():
        COUNTER.value += 1
    deadline = time.monotonic() + 30
    while COUNTER.value < workers and time.monotonic() < deadline:
        time.sleep(0.002)
    if busy_ms:
        time.sleep(busy_ms / 1000)
    return os.getpid()


def say(**fields):
    fields["mono_ns"] = time.monotonic_ns()
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def wait_for_go():
    """Blocks until a line (or end of file) on stdin; at once when stdin is a terminal.

    It reads file descriptor 0 directly, not sys.stdin: a thread blocked in
    sys.stdin.readline() holds the buffer's lock, and a worker forked meanwhile (the pool forks
    replacements from a thread, e.g. with maxtasksperchild) inherits it locked and hangs forever
    in multiprocessing's own sys.stdin.close()."""
    if os.isatty(0):
        return
    while True:
        b = os.read(0, 1)
        if not b or b == b"\n":
            return


def fill(pool, args):
    """Runs one task per worker; returns the workers' pids."""
    busy = args.busy_ms if args.scenario == "killed-busy" else 0
    if busy:
        pool.starmap_async(hold, [(args.mib, args.workers, busy)] * args.workers, chunksize=1)
        while COUNTER.value < args.workers:  # every worker has allocated and is now busy
            time.sleep(0.002)
        return sorted(p.pid for p in pool._pool)
    pids = pool.starmap(hold, [(args.mib, args.workers, 0)] * args.workers, chunksize=1)
    return sorted(set(pids))


def main():
    global COUNTER
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=SCENARIOS, default="open-idle")
    ap.add_argument("--start-method", choices=("fork", "spawn", "forkserver"), default="fork")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--mib", type=int, default=64, help="MiB each worker holds")
    ap.add_argument("--busy-ms", type=int, default=3000, help="killed-busy: task length")
    args = ap.parse_args()
    name_process("alab-pyparent")
    start_lifeline()
    ctx = multiprocessing.get_context(args.start_method)
    COUNTER = ctx.Value("i", 0)
    opts = dict(initializer=init_worker, initargs=(COUNTER,))
    if args.scenario == "maxtasks1":
        opts["maxtasksperchild"] = 1
    print("parent pid %d, %s, scenario %s" % (os.getpid(), args.start_method, args.scenario),
          file=sys.stderr)

    if args.scenario == "with-block":
        with ctx.Pool(args.workers, **opts) as pool:
            say(event="ready", pids=fill(pool, args))
            wait_for_go()
            say(event="go")
        say(event="done")
        wait_for_go()
        return

    pool = ctx.Pool(args.workers, **opts)
    pids = fill(pool, args)
    say(event="ready", pids=pids)
    wait_for_go()
    say(event="go")
    s = args.scenario
    if s == "close-join" or s == "maxtasks1":
        pool.close()
        pool.join()
    elif s == "terminate":
        pool.terminate()
    elif s == "del-gc":
        del pool
        gc.collect()
    elif s == "parent-exits":
        return  # multiprocessing's atexit hook and the pool's finalizer run from here
    elif s in ("open-idle", "killed-idle", "killed-busy"):
        pass  # the pool stays open; killed-*: arenalab SIGKILLs this process now
    say(event="done")
    wait_for_go()


if __name__ == "__main__":
    main()
