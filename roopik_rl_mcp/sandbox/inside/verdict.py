"""The fork server's side of a test: what it reads from the test process (records on the verdict pipe, its
output) and the verdict it makes of them. The fork server never ran the code under test: a test is passed
only if the greeting came first, every later record carried the key, the test's own `P` record arrived and
no failure, the final `D` record arrived, and the process exited 0 (see `TestRun.result`)."""

from __future__ import annotations

import json
import os
import signal

from .tests_compiler import MESSAGE_CHARS, TESTS_FILE


class JobSpec:
    """A job as the fork server sees it: its limits and deadline. Its code is only compiled in the test
    process (confinement.run_test_process), under those limits."""

    def __init__(self, raw: dict, cfg: dict) -> None:
        self.id = raw["id"]
        self.raw = raw
        self.timeout_s = float(raw.get("timeout_s") or 10.0)
        limits = dict(cfg.get("limits") or {})
        limits.update(raw.get("limits") or {})
        limits.setdefault("cpu_s", int(self.timeout_s) + 1)
        self.limits = limits
        self.output_cap = int(limits.get("output_bytes") or (64 << 10))
        self.output_hard = int(limits.get("output_hard_bytes") or (8 << 20))
        self.has_tests = bool(raw.get("tests"))
        self.tests = None  # its tests_compiler.CompiledTests, once the fork server has them



class TestRun:
    """One test process (or one job that failed to start one) as the fork server follows it: its pipes,
    deadline, the records and output read so far, and how it ended."""

    def __init__(self, spec: JobSpec, pid: int | None, fds: dict, started: float) -> None:
        self.spec, self.pid, self.fds, self.started = spec, pid, fds, started
        self.deadline = started + spec.timeout_s
        self.out = {"stdout": bytearray(), "stderr": bytearray()}
        self.dropped = {"stdout": 0, "stderr": 0}
        self.total_output = 0
        self.records = bytearray()
        self.key: bytes | None = None
        self.tests: list[dict] = []
        self.early: dict | None = None
        self.violation: str | None = None
        self.done = False
        self.passed: list[bool] = []
        self.bad: list = []
        self.errors: list[dict] = []
        self.first_failure: str | None = None
        self.tampered: str | None = None
        self.timed_out = False
        self.output_exceeded = False
        self.killed = False
        self.status: int | None = None
        self.workdir = ""
        self.slot = None  # the worker slot it runs in (its pipes are the slot's)
        self.drained = False

    # -- records -----------------------------------------------------------------------------------
    def feed_records(self, data: bytes) -> None:
        self.records += data
        if len(self.records) > (4 << 20) and b"\n" not in self.records:
            self.violation = "an oversized record on the verdict channel"
            self.records.clear()
            return
        while True:
            cut = self.records.find(b"\n")
            if cut < 0:
                return
            line = bytes(self.records[:cut])
            del self.records[: cut + 1]
            self._record(line)

    def _record(self, line: bytes) -> None:
        if self.violation:
            return
        if self.key is None:
            try:
                tag, key, payload = line.split(b"|", 2)
                # An empty greeting: the tests run, and they are the ones this process compiled. Otherwise the
                # job ended before any code ran ({"early": ...}: the solution does not compile, say).
                hello = json.loads(payload) if payload else None
                if tag != b"HELLO" or len(key) != 32 or not (hello is None or isinstance(hello, dict)):
                    raise ValueError("not a greeting")
            except ValueError:
                self.violation = "the verdict channel did not start with the harness's greeting"
                return
            self.key = key
            if hello is None:
                self.tests = self.spec.tests.tests if self.spec.tests is not None else []
            elif isinstance(hello.get("early"), dict):
                self.early = hello["early"]
            self.passed = [False] * len(self.tests)
            self.bad = [None] * len(self.tests)
            return
        head = self.key + b"|"
        if not line.startswith(head):
            self.violation = "a record without the harness's key on the verdict channel"
            return
        try:
            kind, index, payload = line[len(head):].split(b"|", 2)
            index = int(index)
            value = json.loads(payload) if payload else None
        except ValueError:
            self.violation = "a malformed record on the verdict channel"
            return
        if self.done:
            self.violation = "a record after the harness's final record"
            return
        tests = self.tests
        if kind in (b"P", b"F", b"E") and not 0 <= index < len(tests):
            self.violation = "a record for a test that does not exist"
            return
        if kind == b"P":
            self.passed[index] = True
        elif kind in (b"F", b"E"):
            if self.bad[index] is None:
                self.bad[index] = (kind, value)
                if self.first_failure is None:
                    if kind == b"F" and tests[index]["kind"] == "assert":
                        self.first_failure = value if isinstance(value, str) else ""
                    elif isinstance(value, list) and len(value) == 2:
                        self.first_failure = str(value[1])
        elif kind == b"X":
            if not isinstance(value, dict):
                self.violation = "a malformed error record"
                return
            if value.get("phase") == "tamper":
                self.tampered = str(value.get("message"))
            error = {k: value.get(k) for k in ("kind", "message", "line", "file")}
            error["message"] = error["message"] or error["kind"]
            error["phase"] = value.get("phase")
            self.errors.append(error)
            if self.first_failure is None:
                self.first_failure = str(value.get("message") or "")
        elif kind == b"D":
            self.done = True
        else:
            self.violation = "an unknown record on the verdict channel"

    # -- output ------------------------------------------------------------------------------------
    def feed_output(self, stream: str, data: bytes) -> None:
        self.total_output += len(data)
        kept = self.out[stream]
        room = self.spec.output_cap - len(kept)
        if room > 0:
            kept += data[:room]
        self.dropped[stream] += max(0, len(data) - max(room, 0))
        if self.total_output > self.spec.output_hard:
            self.output_exceeded = True

    def text(self, stream: str) -> str:
        out = self.out[stream].decode("utf-8", errors="replace")
        if self.dropped[stream]:
            out += f"\n...[truncated {self.dropped[stream]} bytes]"
        return out

    # -- verdict -----------------------------------------------------------------------------------
    def result(self, duration_ms: int) -> dict:
        spec = self.spec
        tests = []
        for index, test in enumerate(self.tests):
            bad = self.bad[index]
            message = None
            if bad is not None:
                kind, value = bad
                if test["kind"] == "assert":
                    if kind == b"F":
                        status = "failed"
                        message = test["source"] + (f" ({value})" if value is not None else "")
                    else:
                        status = "error"
                        message = (f"{value[0]}: {value[1]}".rstrip(": ") if isinstance(value, list) and len(value) == 2
                                   else "error")
                else:
                    status = "failed" if kind == b"F" else "error"
                    detail = f"{value[0]}: {value[1]}" if isinstance(value, list) and len(value) == 2 else ""
                    message = f"{test['id']}: {detail}".rstrip(": ")
            elif self.passed[index]:
                status = "passed"
            else:
                status = "not_run"
            tests.append({"id": test["id"], "status": status, "line": test["line"], "source": test["source"],
                          "message": message[:MESSAGE_CHARS] if message else None})
        exit_code = None
        signal_name = None
        if self.status is not None:
            if os.WIFEXITED(self.status):
                exit_code = os.WEXITSTATUS(self.status)
            elif os.WIFSIGNALED(self.status):
                exit_code = -os.WTERMSIG(self.status)
        errors = [dict(e) for e in self.errors]
        base = {"tests": tests, "stdout": self.text("stdout"), "stderr": self.text("stderr"),
                "duration_ms": duration_ms, "exit_code": exit_code}

        def verdict(status: str, extra: list[dict], first=None) -> dict:
            return {**base, "status": status, "errors": extra, "first_failure": first}

        if self.violation:
            return verdict("error", [{"kind": "VerdictTampered", "message": self.violation}], self.violation)
        if self.early is not None and exit_code == 0:
            status = self.early.get("status") if self.early.get("status") in ("build_error", "error") else "error"
            early_errors = [e for e in self.early.get("errors") or [] if isinstance(e, dict)]
            return verdict(status, early_errors, early_errors[0].get("message") if early_errors else status)
        if not self.done:
            if self.timed_out:
                return verdict("timeout", [{"kind": "Timeout", "message": "wall-clock time limit reached; "
                                            "the test's processes were killed"}] + _failures(tests))
            if self.output_exceeded:
                message = f"the program wrote more than {spec.output_hard} bytes of output and was killed"
                return verdict("error", [{"kind": "OutputLimitExceeded", "message": message}], message)
            if signal_name or (exit_code is not None and exit_code < 0):
                name = signal_name or _signal_name(-exit_code)
                message = (f"the process was killed by {name} (CPU or memory limit, or a crash) before the tests "
                           "finished")
                return verdict("error", [{"kind": "Killed", "message": message}], message)
            if exit_code in (70, 71) and not self.key:  # the harness failed before the code ran
                message = "the sandbox could not set up this test (see stderr)"
                return verdict("error", [{"kind": "SandboxError", "message": message}], message)
            message = f"the process exited with code {exit_code} before the tests finished"
            return verdict("error", [{"kind": "EarlyExit", "message": message}], message)
        if exit_code != 0:
            message = f"the harness finished but the process exited with code {exit_code}"
            return verdict("error", [{"kind": "EarlyExit", "message": message}], message)
        if self.tampered:
            tamper = [e for e in errors if e.get("phase") == "tamper"]
            return verdict("error", tamper[:1], self.tampered)
        for error in errors:
            error.pop("phase", None)
        if any(e for e in self.errors if e.get("phase") == "solution"):
            return verdict("error", errors, self.first_failure)
        if not spec.has_tests:
            return verdict("no_tests" if not errors else "error", errors, self.first_failure)
        if not tests:
            uncollected = spec.tests.uncollected if spec.tests is not None else ()
            if uncollected and not errors:
                message = (f"no tests collected: these test classes are not run ({', '.join(uncollected)}): only "
                           "unittest.TestCase subclasses (no async test methods) and pytest-style classes are (named "
                           "Test..., no base class, no __init__, test_* methods); or write top-level test_* "
                           "functions, plain asserts or def check(candidate)")
                return verdict("no_tests", [{"kind": "NoTestsCollected", "message": message}], message)
            return verdict("no_tests" if not errors else "error", errors, self.first_failure)
        all_passed = all(t["status"] == "passed" for t in tests)
        status = "passed" if all_passed and not errors else "failed"
        return verdict(status, errors + _failures(tests), None if status == "passed" else self.first_failure)


def _failures(tests: list[dict]) -> list[dict]:
    return [{"kind": "AssertionError" if t["status"] == "failed" else "TestError", "message": t["message"],
             "line": t["line"], "file": TESTS_FILE} for t in tests if t["status"] in ("failed", "error")]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"

