"""Marks for `arenalab trace record`.

Inside a script run by `arenalab trace record -- SCRIPT`, ``mark("label")`` writes a mark into the
trace together with the interpreter's own pymalloc counters at that moment
(``_PyObject_DebugMallocStats``). `arenalab trace replay` compares the model's counters with
these at every mark. Outside a recording, ``mark`` does nothing and ``recording()`` is False.
"""

import ctypes
import os

# Taken out of the environment so that child processes of the script never call it.
_address = os.environ.pop("ARENALAB_TRACE_MARK", None)
# PYFUNCTYPE: the call keeps the GIL, which the interpreter's report needs.
_mark = ctypes.PYFUNCTYPE(None, ctypes.c_char_p)(int(_address)) if _address else None


def recording():
    """Whether this interpreter is being recorded by arenalab."""
    return _mark is not None


def mark(label):
    """Write a mark named `label` (a str) with the interpreter's counters into the trace."""
    if _mark is not None:
        _mark(str(label).encode("utf-8", "replace"))
