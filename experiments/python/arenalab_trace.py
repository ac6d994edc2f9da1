"""Marks for `arenalab trace record`.

Inside a script run by `arenalab trace record -- SCRIPT`, ``mark("label")`` writes a mark into the
trace together with the interpreter's own pymalloc counters at that moment
(``_PyObject_DebugMallocStats``). `arenalab trace replay` compares the model's counters with
these at every mark.

Outside a recording ``mark`` does nothing, unless ``ARENALAB_TRACE_RSS`` names a file: then it
appends ``label<TAB>anonymous resident bytes`` of this process to it (arenalab uses that to
compare a real ``PYTHONMALLOC=malloc`` run with the trace replayed on glibc).
"""

import ctypes
import os

# Taken out of the environment so that child processes of the script never call it.
_address = os.environ.pop("ARENALAB_TRACE_MARK", None)
# PYFUNCTYPE: the call keeps the GIL, which the interpreter's report needs.
_mark = ctypes.PYFUNCTYPE(None, ctypes.c_char_p)(int(_address)) if _address else None
_rss_file = os.environ.get("ARENALAB_TRACE_RSS")


def recording():
    """Whether this interpreter is being recorded by arenalab."""
    return _mark is not None


def _anonymous_bytes():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    return 0


def mark(label):
    """Write a mark named `label` (a str) with the interpreter's counters into the trace."""
    if _mark is not None:
        _mark(str(label).encode("utf-8", "replace"))
    elif _rss_file:
        with open(_rss_file, "a") as f:
            f.write("%s\t%d\n" % (label, _anonymous_bytes()))
