"""The AST rewrite of tests: what the source-level rewrite (rewrite_source.py) cannot take.

Top-level asserts become try/except statements that report through the helpers (one test each); each `test_*`
function, each test method of a pytest-style class and of a unittest.TestCase subclass is one test, reported
when it returns. Asserts inside test functions keep Python's meaning."""

from __future__ import annotations

import ast

from .placeholders import call, constant


def _locate(node: ast.AST, like: ast.AST) -> ast.AST:
    """Give `node` and its new descendants `like`'s position; original subtrees keep theirs."""
    if "lineno" in node._attributes and getattr(node, "lineno", None) is not None:
        return node
    for attr in ("lineno", "col_offset", "end_lineno", "end_col_offset"):
        if attr in node._attributes:
            setattr(node, attr, getattr(like, attr, 1) or 0)
    for child in ast.iter_child_nodes(node):
        _locate(child, like)
    return node


def _bare_except(body: list[ast.stmt]) -> ast.ExceptHandler:
    return ast.ExceptHandler(type=None, name=None, body=body)


class _AssertRewriter(ast.NodeTransformer):
    """`assert cond, msg` -> try/except that reports through the helpers; test_* functions count once."""

    def __init__(self, source: str) -> None:
        self.lines = [line.encode() for line in source.splitlines(keepends=True)]
        self.asserts: list[dict] = []

    def segment(self, node: ast.AST) -> str | None:
        """ast.get_source_segment without re-splitting the whole source for every node."""
        try:
            first, last = node.lineno - 1, node.end_lineno - 1
            start, end = node.col_offset, node.end_col_offset
            if first == last:
                return self.lines[first][start:end].decode()
            parts = [self.lines[first][start:], *self.lines[first + 1:last], self.lines[last][:end]]
            return b"".join(parts).decode()
        except (AttributeError, IndexError, TypeError, UnicodeDecodeError):
            return None

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        if node.name.startswith("test_"):
            return node  # its asserts keep their meaning; the function is one test
        self.generic_visit(node)
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return node  # coroutine bodies are not run by the harness; leave them alone

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        return node

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        index = len(self.asserts)
        text = self.segment(node) or "assert ..."
        self.asserts.append({"id": f"assert#{index}", "line": node.lineno, "source": text[:300]})
        if _contains_yield(node):
            return node
        msg = node.msg if node.msg is not None else ast.Constant(value=None)
        raise_fail = ast.Raise(exc=constant("SENT"), cause=None)
        check = ast.If(test=node.test, body=[ast.Pass()], orelse=[raise_fail])
        on_fail = ast.ExceptHandler(
            type=constant("SENT"), name=None,
            body=[ast.Try(body=[call("FAIL", ast.Constant(index), msg)],
                          handlers=[_bare_except([call("FAIL", ast.Constant(index), ast.Constant(None))])],
                          orelse=[], finalbody=[])],
        )
        on_error = _bare_except([call("ERR", ast.Constant(index))])
        stmt = ast.Try(body=[check], handlers=[on_fail, on_error], orelse=[call("OK", ast.Constant(index))],
                       finalbody=[])
        return _locate(stmt, node)


def _contains_yield(node: ast.AST) -> bool:
    return any(isinstance(n, (ast.Yield, ast.YieldFrom, ast.Await)) for n in ast.walk(node))


class _ReturnRewriter(ast.NodeTransformer):
    """Inside a test_* function: `return x` -> `x; raise RET` so the pass is only reported at the end."""

    def visit_FunctionDef(self, node):  # nested functions keep their returns
        return node

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_ClassDef(self, node):
        return node

    def visit_Return(self, node: ast.Return):
        value = node.value if node.value is not None else ast.Constant(None)
        return [_locate(ast.Expr(value), node), _locate(ast.Raise(exc=constant("RET"), cause=None), node)]


def _wrap_test_function(node: ast.FunctionDef, index: int) -> ast.FunctionDef:
    body = [_ReturnRewriter().visit(stmt) for stmt in node.body]
    flat: list[ast.stmt] = []
    for item in body:
        flat.extend(item if isinstance(item, list) else [item])
    body = ast.Try(body=flat or [ast.Pass()], handlers=[_bare_except([call("TEND", ast.Constant(index))])],
                   orelse=[call("OK", ast.Constant(index))], finalbody=[])
    node.body = [_locate(body, node)]
    return node


def collectable_test_class(node: ast.ClassDef) -> bool:
    """A pytest-style test class (`Test...`, no base class, no __init__, test_* methods with plain asserts).
    unittest.TestCase classes are not collected: their assert methods are a library's, which the code could
    patch before the tests import it."""
    if not node.name.startswith("Test") or node.bases or node.keywords or node.decorator_list:
        return False
    methods = [item.name for item in node.body if isinstance(item, ast.FunctionDef)]
    return "__init__" not in methods and any(name.startswith("test_") for name in methods)


def unittest_classes(tree: ast.Module) -> tuple[list[tuple[ast.ClassDef, list[tuple[str, int]]]], bool | str]:
    """The tests' unittest.TestCase subclasses (top level, any base a TestCase: `unittest.TestCase`, an imported
    `TestCase`, or such a class of this file) with the test methods each runs in unittest's order (names
    starting with "test", inherited from this file's bases too, sorted; each with its line); and whether the
    tests import unittest ("mock" if unittest.mock too).
    Classes and methods under a plain @unittest.skip(...) are left out, as unittest skips them; async test
    methods and IsolatedAsyncioTestCase are not collected (the caller lists those classes as not run)."""
    modules, case_names, imports, mock = set(), set(), False, False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "unittest" or alias.name.startswith("unittest."):
                    imports, mock = True, mock or alias.name == "unittest.mock"
                    if alias.name == "unittest" or alias.asname is None:
                        modules.add(alias.asname or "unittest")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("unittest"):
            imports = True
            mock = mock or node.module == "unittest.mock" or any(a.name == "mock" for a in node.names)
            if node.module in ("unittest", "unittest.case"):
                case_names.update(a.asname or a.name for a in node.names if a.name == "TestCase")

    def is_case(base: ast.expr, found: dict) -> bool:
        if isinstance(base, ast.Name):
            return base.id in case_names or base.id in found
        if isinstance(base, ast.Attribute) and base.attr == "TestCase":
            inner = base.value
            if isinstance(inner, ast.Attribute) and inner.attr == "case":
                inner = inner.value
            return isinstance(inner, ast.Name) and inner.id in modules
        return False

    def skipped(node) -> bool:
        return any(isinstance(d, ast.Call) and not d.keywords and len(d.args) <= 1 and (
            (isinstance(d.func, ast.Attribute) and d.func.attr == "skip") or
            (isinstance(d.func, ast.Name) and d.func.id == "skip")) for d in node.decorator_list)

    found: dict[str, ast.ClassDef] = {}
    collected = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or not any(is_case(base, found) for base in node.bases):
            continue
        found[node.name] = node
        if skipped(node):
            continue
        names: dict[str, ast.AST | None] = {}
        chain = [node]
        while chain:  # this class first: its definitions override its bases'
            klass = chain.pop(0)
            for item in klass.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"):
                    runs = isinstance(item, ast.FunctionDef) and not skipped(item)
                    names.setdefault(item.name, item if runs else None)
            chain.extend(found[base.id] for base in klass.bases if isinstance(base, ast.Name) and base.id in found)
        runnable = sorted((name, item.lineno) for name, item in names.items() if item is not None)
        if runnable and not any(isinstance(item, ast.AsyncFunctionDef) and item.name.startswith("test")
                                for item in node.body):
            collected.append((node, runnable))
    return collected, "mock" if mock else imports



def rewrite(source: str, tree: ast.Module, collected: list, cases: list, use_unittest) -> tuple:
    """Rewrite `tree` (parsed from `source`) in place: (tree, tests, test functions the flow calls in order,
    whether the tests define check()). `collected`: the pytest-style classes to run; `cases`: the unittest
    classes with their methods (see unittest_classes), run only if `use_unittest`."""
    rewriter = _AssertRewriter(source)
    tree = rewriter.visit(tree)
    tests = [{**a, "kind": "assert"} for a in rewriter.asserts]
    test_functions: list[str] = []
    has_check = False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            index = len(tests)
            tests.append({"id": node.name, "line": node.lineno, "source": node.name, "kind": "function"})
            test_functions.append(node.name)
            _wrap_test_function(node, index)
        elif isinstance(node, ast.FunctionDef) and node.name == "check":
            has_check = True
    for node in collected:  # pytest's way: each test method on a fresh instance, one test each
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name.startswith("test_"):
                index = len(tests)
                name = f"{node.name}.{item.name}"
                tests.append({"id": name, "line": item.lineno, "source": name, "kind": "function"})
                _wrap_test_function(item, index)
                runner = ast.parse(f"def __roopik_test_{index}():\n    {node.name}().{item.name}()\n").body[0]
                for part in ast.walk(runner):
                    ast.copy_location(part, item)
                tree.body.append(runner)
                test_functions.append(runner.name)
    if use_unittest:
        for node, names in cases:  # unittest's way: setUpClass, then per method setUp, it, tearDown
            for number, (name, line) in enumerate(names):
                index = len(tests)
                test_id = f"{node.name}.{name}"
                tests.append({"id": test_id, "line": line, "source": test_id, "kind": "function"})
                runner = ast.parse(f"def __roopik_test_{index}():\n    pass\n").body[0]
                runner.body = [call("UCASE", ast.Constant(index), ast.Name(node.name, ast.Load()),
                                    ast.Constant(name), ast.Constant(number == len(names) - 1))]
                for part in ast.walk(runner):
                    ast.copy_location(part, node)
                tree.body.append(runner)
                test_functions.append(runner.name)
    return tree, tests, test_functions, has_check
