"""Preloaded modules and pristine snapshots: what the tamper checks compare against.

Installed first of all the inside modules, so that the copies are taken before anything else of the sandbox
runs. Test programs import the preloaded modules for free (fork shares the pages). Kept small: every test's
fork and exit pays for the size of the fork server's (and its worker slots') memory.
"""

from __future__ import annotations

import builtins
import ctypes
import signal
import sys

import bisect  # noqa: F401
import collections  # noqa: F401
import copy  # noqa: F401
import functools  # noqa: F401
import heapq  # noqa: F401
import itertools  # noqa: F401
import math  # noqa: F401
import operator  # noqa: F401
import random  # noqa: F401
import re  # noqa: F401
import string  # noqa: F401
import typing  # noqa: F401

PRELOADED = ("bisect", "collections", "copy", "functools", "heapq", "itertools", "math", "operator", "random", "re",
             "string", "typing")
PRISTINE_BUILTINS = dict(builtins.__dict__)
PRISTINE_MODULES = {name: (sys.modules[name], dict(sys.modules[name].__dict__)) for name in PRELOADED}
"""module name -> (the module, a copy of its namespace as loaded)."""
PRISTINE_BUILTIN_ITEMS = tuple(PRISTINE_BUILTINS.items())
ALL_SIGNALS = frozenset(signal.valid_signals())


def _version_view(mapping: dict):
    """A read-only window on CPython's private version tag of `mapping` (PEP 509), or None.

    The tag changes on every mutation of the dict, so an unchanged tag proves the builtins untouched
    without the full identity scan (which would copy-on-write-fault every page holding a builtin). Only
    used when this interpreter's dicts are checked here to behave so; otherwise the scan always runs."""
    try:
        probe = {"a": 1}
        view = ctypes.c_uint64.from_address(id(probe) + 24)  # after PyObject_HEAD and ma_used
        seen = [view.value]
        probe["a"] = 2
        seen.append(view.value)
        probe["b"] = 3
        seen.append(view.value)
        del probe["b"]
        seen.append(view.value)
        probe.get("a")
        if len(set(seen)) != 4 or view.value != seen[-1]:
            return None
        return ctypes.c_uint64.from_address(id(mapping) + 24)
    except Exception:  # noqa: BLE001 - no such field here: scan every time
        return None


BUILTINS_VERSION = _version_view(builtins.__dict__)
"""The builtins dict's version tag (read through ctypes), or None where it cannot be trusted."""
