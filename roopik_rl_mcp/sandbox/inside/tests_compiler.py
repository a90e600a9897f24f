"""Compiling a job's tests (fork server side, trusted: tests define the reward): once per distinct tests
source, shared by every job that uses them, and sent to each worker slot that needs them (`wire`).

Two rewrites, by what the tests hold: rewrite_source.py for plain asserts and check() functions (most tests;
several times cheaper), rewrite_ast.py for test functions and test classes. One dependency analysis for both:
what the compiled code names (`dependencies`). The flow is the harness's own small program around them:
run the solution, the tests, check(candidate) and the test functions, then the final record."""

from __future__ import annotations

import ast
import marshal
import warnings

from . import rewrite_ast, rewrite_source
from .placeholders import NamesToPlaceholders
from .snapshots import PRISTINE_BUILTINS, PRISTINE_MODULES

SOLUTION_FILE = "solution.py"
TESTS_FILE = "tests.py"
FLOW_FILE = "<harness>"
MESSAGE_CHARS = 2000
"""Longest message (an exception's text, a failure's) kept in a verdict."""


def _bound_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
    return names



def _code_names(code, into: set) -> set:
    into.update(code.co_names)
    for const in code.co_consts:
        if type(const) is type(code):
            _code_names(const, into)
    return into


def dependencies(tree: ast.Module, code, imports: list) -> dict:
    """What the tests rely on, which the harness checks untouched before it records any pass: the builtins and
    the attributes of the preloaded modules they import that their compiled code names (every name it loads,
    stores or reads as an attribute: a superset of what it uses, never less), the preloaded modules, those
    imported at top level (alias, module), and their own top-level names. `imports`: the tests' import
    statements."""
    own = _bound_names(tree)
    names = _code_names(code, set())
    modules: dict[str, str] = {}
    top_level = set()
    top = set(map(id, tree.body))
    for node in imports:
        if type(node) is ast.Import:
            for alias in node.names:
                if alias.name in PRISTINE_MODULES:
                    modules[alias.asname or alias.name] = alias.name
                    if id(node) in top:
                        top_level.add((alias.asname or alias.name, alias.name))
        elif node.module in PRISTINE_MODULES and node.level == 0:
            modules[f"\x00{node.module}"] = node.module
    used = set(modules.values())
    return {
        "builtins": sorted(n for n in names if n in PRISTINE_BUILTINS and n not in own),
        "attrs": sorted((m, n) for m in used for n in names if n in PRISTINE_MODULES[m][1]),
        "modules": sorted(used),
        "top_level": sorted(top_level),
        "own": sorted(own),
    }


FLOW_TEMPLATE = """
try:
    EXEC(SOL, NS)
except:
    XERR("solution")
else:
    TESTS_BLOCK
FINAL()
EXIT(0)
"""

TESTS_BLOCK = """
try:
    EXEC(TESTS, NS)
except:
    XERR("tests")
SNAP()
CHECK_BLOCK
for __roopik_name in TEST_FUNCTIONS:
    try:
        NS[__roopik_name]()
    except:
        XERR("tests")
"""

CHECK_BLOCK = """
if ENTRY in NS and "check" in NS:
    try:
        NS["check"](NS[ENTRY])
    except:
        XERR("tests")
else:
    NOENTRY()
"""



def _flow_code(has_tests: bool, has_check: bool):
    source = FLOW_TEMPLATE
    if has_tests:
        block = TESTS_BLOCK.replace("CHECK_BLOCK", CHECK_BLOCK.strip() if has_check else "pass")
        source = source.replace("TESTS_BLOCK", _indent(block.strip(), 4).lstrip())
    else:
        source = source.replace("TESTS_BLOCK", "pass")
    tree = NamesToPlaceholders().visit(ast.parse(source))
    ast.fix_missing_locations(tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compile(tree, FLOW_FILE, "exec", dont_inherit=True)


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in text.splitlines())


FLOWS = {(t, c): _flow_code(t, c) for t, c in ((False, False), (True, False), (True, True))}


def describe_syntax(exc: BaseException, filename: str) -> dict:
    line = getattr(exc, "lineno", None)
    return {"kind": type(exc).__name__, "message": (str(exc) or type(exc).__name__)[:MESSAGE_CHARS],
            "line": line if isinstance(line, int) else None, "file": filename}


class CompiledTests:
    """The tests, rewritten and compiled once per distinct source by the fork server (tests are trusted
    input: they define the reward) and shared by every job that uses them."""

    def __init__(self, source: str | None) -> None:
        self.serial = -1  # set by the fork server's cache: how worker slots name these tests
        self.last_ms: int | None = None  # how long the last job with these tests took (the fork server's queue order)
        self.tests: list[dict] = []
        self.test_functions: list[str] = []
        self.code = None
        self.flow_key = (False, False)
        self.flow = FLOWS[self.flow_key]
        self.deps = {"builtins": [], "attrs": [], "modules": [], "top_level": [], "own": []}
        self.error: dict | None = None
        self.uncollected: tuple = ()  # test classes not run (unittest style, say): the verdict says so
        # Set by Harness.prepare: the flow with the helpers (and these tests) substituted in, and what the
        # tamper checks compare.
        self.prepared_flow = None
        self.fixed_deps: tuple = ()
        self.module_checks: tuple = ()
        self.own_names: tuple = ()
        if source:
            self._compile(source)

    def _compile(self, source: str) -> None:
        try:
            tree = ast.parse(source, TESTS_FILE)
            classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and any(
                isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test")
                for item in node.body)]
            collected = [node for node in classes if rewrite_ast.collectable_test_class(node)]
            cases, imports_unittest = rewrite_ast.unittest_classes(tree)
            self.uncollected = tuple(node.name for node in classes if node not in collected
                                     and all(node is not case for case, _ in cases))
            try:
                if collected or cases:
                    raise rewrite_source.Unsuitable("test classes")
                rewritten, self.tests, imports = rewrite_source.rewrite(source, tree)
                self.code = compile(rewritten, TESTS_FILE, "exec", dont_inherit=True)
                self.deps = dependencies(tree, self.code, imports)
                has_check = any(type(n) is ast.FunctionDef and n.name == "check" for n in tree.body)
                self.flow_key = (True, has_check)
                self.flow = FLOWS[self.flow_key]
                return
            except rewrite_source.Unsuitable:
                self.tests, self.code = [], None
            imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
            uses_unittest = imports_unittest if cases else False
            tree, self.tests, self.test_functions, has_check = rewrite_ast.rewrite(
                source, tree, collected, cases, uses_unittest)
            self.code = compile(tree, TESTS_FILE, "exec", dont_inherit=True)
            self.deps = dependencies(tree, self.code, imports)
            self.deps["unittest"] = uses_unittest
            self.flow_key = (True, has_check)
            self.flow = FLOWS[self.flow_key]
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
            error = describe_syntax(exc, TESTS_FILE)
            error["kind"] = "TestSyntaxError"
            self.error = error
            self.tests, self.code = [], None

    _WIRE = ("serial", "tests", "test_functions", "code", "flow_key", "deps", "error", "uncollected")

    def wire(self) -> bytes:
        """Marshalled, for a worker slot (which prepares its own copy: the helpers are its own objects)."""
        return marshal.dumps(tuple(getattr(self, name) for name in self._WIRE))

    @classmethod
    def from_wire(cls, data: bytes) -> "CompiledTests":
        tests = cls(None)
        for name, value in zip(cls._WIRE, marshal.loads(data)):
            setattr(tests, name, value)
        tests.flow = FLOWS[tests.flow_key]
        return tests


class Job:
    """One program: its solution compiled in its own child, before any of it runs, plus the shared tests."""

    def __init__(self, raw: dict, tests: CompiledTests) -> None:
        self.raw = raw
        self.tests = tests.tests
        self.compiled = tests  # prepared by the fork server's Harness: flow and tamper checks
        self.entry_point = raw.get("entry_point")
        self.early: dict | None = None  # a result decided without running anything
        self.solution = None
        try:
            self.solution = compile(raw.get("code") or "", SOLUTION_FILE, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
            self.early = {"status": "build_error", "errors": [describe_syntax(exc, SOLUTION_FILE)]}
            return
        if tests.error is not None:
            self.early = {"status": "error", "errors": [tests.error]}
