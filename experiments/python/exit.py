"""If I kill the Python process, is its memory released?

This script builds about M MiB of small Python objects (floats in a list), says so, waits for a
line on stdin (or for a signal), and then ends in the chosen way. Watch `free -m` (or
/proc/meminfo's MemAvailable) in another terminal, or let arenalab measure it
(``arenalab cpython --part exit``).

Run it by hand (any CPython 3.8 or newer):

    python3 exit.py --mib 512 --ending normal       # press Enter to end it
    python3 exit.py --mib 512 --ending os-exit
    python3 exit.py --mib 512                       # then: kill -9 <pid> (or kill <pid>)

Endings:

    normal      return from the script: the interpreter's finalization destroys every object
                (module globals are cleared, each float freed one by one), then exit status 0
    os-exit     os._exit(0): no finalization, nothing freed by Python
    exception   an unhandled exception: the traceback is printed, then the same finalization
                as normal (exit status 1)
    wait        wait on stdin until the process is ended from outside (SIGKILL, SIGTERM: with
                no handler installed, Python dies by SIGTERM's default action)

Whatever the ending, the kernel takes every page of the process back when it exits; the
ending changes only how long the process spends before that.
"""

import argparse
import json
import os
import sys
import time


def say(**fields):
    fields["mono_ns"] = time.monotonic_ns()
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--ending", choices=("normal", "os-exit", "exception", "wait"),
                    default="wait")
    args = ap.parse_args()
    # A float is 32 bytes in pymalloc plus 8 for its slot in the list: 40 bytes each.
    global objects
    objects = [i + 0.5 for i in range((args.mib << 20) // 40)]
    say(event="ready", pid=os.getpid(), objects=len(objects))
    if sys.stdin.isatty():
        print("built %d floats; press Enter to end (%s)" % (len(objects), args.ending),
              file=sys.stderr)
    sys.stdin.readline()
    if args.ending == "wait":
        while True:
            time.sleep(3600)
    say(event="ending")
    if args.ending == "os-exit":
        os._exit(0)
    if args.ending == "exception":
        raise RuntimeError("unhandled, on purpose")
    # normal: return; the objects are destroyed during finalization


if __name__ == "__main__":
    main()
