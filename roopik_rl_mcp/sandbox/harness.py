"""The test harness that runs *inside* the sandboxed interpreter.

Stdlib only, and self-contained: it is executed as a script (`python -I harness.py`), never imported by
the server. It reads its job from stdin, applies resource limits to itself before any untrusted code
runs, executes the solution, then the tests with every `assert` rewritten so each one is counted
separately (partial credit), and finally writes a verdict file stamped with a nonce it was given.
A verdict only exists when the harness itself reached the end, so code that exits early, crashes or
hangs can never be reported as passed.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import resource
import signal
import sys
import time
import traceback

SOLUTION_FILE = "solution.py"
TESTS_FILE = "tests.py"
CHECK_HOOK = "__roopik_check__"


class _Budget(BaseException):
    """Raised by the wall-clock alarm; a BaseException so `except Exception` in user code misses it."""


def _apply_limits(limits: dict) -> None:
    pairs = {
        "cpu_s": resource.RLIMIT_CPU,
        "memory_bytes": resource.RLIMIT_AS,
        "file_bytes": resource.RLIMIT_FSIZE,
        "open_files": resource.RLIMIT_NOFILE,
    }
    for key, which in pairs.items():
        value = limits.get(key)
        if value:
            resource.setrlimit(which, (int(value), int(value)))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class _AssertRewriter(ast.NodeTransformer):
    """`assert cond, msg` -> `__roopik_check__(id, lambda: cond, lambda: msg)`; records each assert's source."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.asserts: list[dict] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        # test_* functions are counted as one test each; their asserts keep their normal meaning.
        if node.name.startswith("test_"):
            return node
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        index = len(self.asserts)
        text = ast.get_source_segment(self.source, node) or "assert ..."
        self.asserts.append({"id": f"assert#{index}", "line": node.lineno, "source": text[:300]})
        msg = node.msg if node.msg is not None else ast.Constant(value=None)
        call = ast.Call(
            func=ast.Name(id=CHECK_HOOK, ctx=ast.Load()),
            args=[
                ast.Constant(value=index),
                ast.Lambda(args=_no_args(), body=node.test),
                ast.Lambda(args=_no_args(), body=msg),
            ],
            keywords=[],
        )
        return ast.copy_location(ast.Expr(value=call), node)


def _no_args() -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])


def _error_line(exc: BaseException, filename: str) -> int | None:
    line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line


def _describe(exc: BaseException, filename: str) -> dict:
    return {
        "kind": type(exc).__name__,
        "message": (str(exc) or type(exc).__name__)[:2000],
        "line": _error_line(exc, filename),
        "file": filename,
    }


class Harness:
    def __init__(self, job: dict) -> None:
        self.job = job
        self.deadline = time.monotonic() + float(job["timeout_s"])
        self.errors: list[dict] = []
        self.tests: list[dict] = []
        self.status = "error"

    # -- alarm -------------------------------------------------------------------------------------
    def _arm(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _Budget()
        signal.setitimer(signal.ITIMER_REAL, remaining)

    @staticmethod
    def _disarm() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    # -- phases ------------------------------------------------------------------------------------
    def run(self) -> None:
        code = self.job["code"]
        try:
            solution = compile(code, SOLUTION_FILE, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            self.status = "build_error"
            self.errors.append(_describe(exc, SOLUTION_FILE))
            return

        tests_src = self.job.get("tests")
        rewritten = None
        if tests_src:
            try:
                rewritten = self._prepare_tests(tests_src)
            except SyntaxError as exc:
                self.status = "error"
                error = _describe(exc, TESTS_FILE)
                error["kind"] = "TestSyntaxError"
                self.errors.append(error)
                return

        namespace: dict = {"__name__": "solution", "__builtins__": builtins}
        try:
            self._arm()
            exec(solution, namespace)
            self._disarm()
        except _Budget:
            self.status = "timeout"
            self.errors.append({"kind": "Timeout", "message": "time limit reached while running the code", "line": None, "file": SOLUTION_FILE})
            return
        except BaseException as exc:  # SystemExit included: exiting early is an error, never a pass
            self._disarm()
            self.status = "error"
            self.errors.append(_describe(exc, SOLUTION_FILE))
            return

        if rewritten is None:
            self.status = "no_tests"
            return
        self._run_tests(rewritten, namespace)

    def _prepare_tests(self, source: str):
        tree = ast.parse(source, TESTS_FILE)
        rewriter = _AssertRewriter(source)
        tree = ast.fix_missing_locations(rewriter.visit(tree))
        test_functions = [
            node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        ]
        has_check = any(isinstance(node, ast.FunctionDef) and node.name == "check" for node in tree.body)
        for item in rewriter.asserts:
            self.tests.append({**item, "status": "not_run", "runs": 0, "message": None})
        for name in test_functions:
            self.tests.append({"id": name, "line": None, "source": name, "status": "not_run", "runs": 0, "message": None})
        return compile(tree, TESTS_FILE, "exec", dont_inherit=True), test_functions, has_check

    def _record(self, index: int, outcome: str, message: str | None) -> None:
        test = self.tests[index]
        test["runs"] += 1
        if outcome != "passed" and test["status"] in ("not_run", "passed"):
            test["status"], test["message"] = outcome, message
        elif test["status"] == "not_run":
            test["status"] = "passed"

    def _make_check_hook(self):
        record = self._record
        tests = self.tests

        def check(index, condition, message):
            try:
                ok = condition()
            except _Budget:
                raise
            except BaseException as exc:  # the candidate raised (or tried to exit) inside an assert
                record(index, "error", f"{type(exc).__name__}: {exc}"[:2000])
                return
            if ok:
                record(index, "passed", None)
            else:
                try:
                    detail = message()
                except BaseException:
                    detail = None
                text = tests[index]["source"] + (f" ({detail})" if detail is not None else "")
                record(index, "failed", text[:2000])

        return check

    def _run_tests(self, compiled, namespace: dict) -> None:
        code, test_functions, has_check = compiled
        namespace[CHECK_HOOK] = self._make_check_hook()
        entry_point = self.job.get("entry_point")
        try:
            self._arm()
            exec(code, namespace)
            if has_check:
                if not entry_point or entry_point not in namespace:
                    raise NameError(f"entry point {entry_point!r} is not defined by the code")
                namespace["check"](namespace[entry_point])
            self._disarm()
        except _Budget:
            self._timeout()
            return
        except BaseException as exc:
            self._disarm()
            self.errors.append(_describe(exc, TESTS_FILE))

        offset = len(self.tests) - len(test_functions)
        for position, name in enumerate(test_functions):
            index = offset + position
            try:
                self._arm()
                namespace[name]()
                self._disarm()
                self._record(index, "passed", None)
            except _Budget:
                self._timeout()
                return
            except BaseException as exc:
                self._disarm()
                outcome = "failed" if isinstance(exc, AssertionError) else "error"
                self._record(index, outcome, f"{name}: {type(exc).__name__}: {exc}".rstrip(": ")[:2000])
        self._finish()

    def _timeout(self) -> None:
        self.status = "timeout"
        self.errors.append({"kind": "Timeout", "message": "time limit reached while running the tests", "line": None, "file": TESTS_FILE})

    def _finish(self) -> None:
        if not self.tests:
            self.status = "no_tests" if not self.errors else "error"
            return
        all_passed = all(t["status"] == "passed" for t in self.tests)
        self.status = "passed" if all_passed and not self.errors else "failed"
        for test in self.tests:
            if test["status"] in ("failed", "error"):
                kind = "AssertionError" if test["status"] == "failed" else "TestError"
                self.errors.append({"kind": kind, "message": test["message"], "line": test["line"], "file": TESTS_FILE})


# Bound before any untrusted code runs, so patching json/os/builtins from the solution cannot forge a verdict.
_dumps, _open, _write, _close, _exit = json.dumps, os.open, os.write, os.close, os._exit


def main() -> None:
    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    sys.stdin = open(os.devnull)
    verdict_path = job["verdict_path"]
    nonce = job.pop("nonce")
    _apply_limits(job.get("limits", {}))

    def on_alarm(signum, frame):
        raise _Budget()

    signal.signal(signal.SIGALRM, on_alarm)
    harness = Harness(job)
    try:
        harness.run()
    except _Budget:
        harness.status = "timeout"
    signal.setitimer(signal.ITIMER_REAL, 0)
    verdict = {"nonce": nonce, "status": harness.status, "errors": harness.errors, "tests": harness.tests}
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    # Write through a fresh descriptor; user code cannot have replaced this function's locals.
    fd = _open(verdict_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    _write(fd, _dumps(verdict).encode())
    _close(fd)
    # Skip atexit hooks and finalizers the code may have registered.
    _exit(0)


if __name__ == "__main__":
    main()
