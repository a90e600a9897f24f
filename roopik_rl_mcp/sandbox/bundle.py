"""The sandbox's inside (the `inside` package) as one payload for the `-I -S` interpreter in the sandbox.

The server never imports the inside modules to run them: it compiles their sources, once per server process
(`payload` is cached), into one marshalled code object. The stub (isolation._STUB) reads it from stdin and
executes it: it registers each module in sys.modules under its package and runs it, in the order of
`MODULES` (each one only imports those before it), then starts the fork server (`dispatch.main`). All of
this happens before the sandbox reads its first job, so before any untrusted code exists."""

from __future__ import annotations

import functools
import marshal
from pathlib import Path

PACKAGE = "roopik_rl_mcp.sandbox.inside"
INSIDE = Path(__file__).with_name("inside")
MODULES = ("snapshots", "kernel", "seccomp", "placeholders", "rewrite_source", "rewrite_ast", "tests_compiler",
           "confinement", "testdirs", "harness", "verdict", "flat", "slots", "dispatch")
"""The inside modules in installation order: snapshots first (the pristine copies are taken before anything
else of the sandbox runs), dispatch (the fork server) last."""

_MODULES_PLACEHOLDER = "\x00roopik inside modules"
_LOADER = f'''
def _install_inside(package, init, modules):
    import sys
    root = type(sys)(package)
    root.__path__, root.__package__ = [], package
    sys.modules[package] = root
    exec(init, root.__dict__)
    for name, code in modules:
        module = type(sys)(package + "." + name)
        module.__package__, module.__file__ = package, code.co_filename
        sys.modules[module.__name__] = module
        exec(code, module.__dict__)
        setattr(root, name, module)
    return root


_install_inside({PACKAGE!r}, *{_MODULES_PLACEHOLDER!r}).dispatch.main()
'''


def _compile(name: str):
    source = (INSIDE / f"{name}.py").read_text(encoding="utf-8")
    return compile(source, f"inside/{name}.py", "exec", dont_inherit=True)


@functools.cache
def payload() -> bytes:
    """The marshalled loader with every inside module's code in it (the sandbox runs this same interpreter)."""
    modules = (_compile("__init__"), tuple((name, _compile(name)) for name in MODULES))
    loader = compile(_LOADER, "inside/<loader>", "exec", dont_inherit=True)
    consts = tuple(modules if value == _MODULES_PLACEHOLDER else value for value in loader.co_consts)
    if consts == loader.co_consts:
        raise RuntimeError("the inside loader lost its placeholder")
    return marshal.dumps(loader.replace(co_consts=consts))
