"""Run untrusted Python: batches of programs through one warm fork server inside one sandbox.

`run_batch` starts the sandbox (see isolation.py) with the fork server (forkserver.py) in it, streams the
jobs to it and reads one verdict per job back; `run_python` is a batch of one. The server process never
forks a child of its own that runs code: `subprocess` spawns the sandbox, and every fork happens inside,
from the single-threaded fork server.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from roopik_rl_mcp.sandbox import isolation as iso
from roopik_rl_mcp.sandbox.models import ExecError, ExecutionResult, TestOutcome

STARTUP_S = 30.0
"""How long a sandbox may take to start before its batch is failed."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 1 << 30
    """Address space per process (RLIMIT_AS)."""
    file_bytes: int = 16 << 20
    """Largest file the code may write (RLIMIT_FSIZE)."""
    open_files: int = 64
    nproc: int = 32
    """Processes per test (RLIMIT_NPROC, counted inside the test's own user namespace)."""
    output_bytes: int = 64 << 10
    """Kept per stream; the rest is read and dropped, and a visible marker says how much."""
    output_hard_bytes: int = 8 << 20
    """Total output after which the test is killed (a flood cannot keep the fork server busy)."""
    tmpfs_bytes: int = 64 << 20
    """Size of the test's private /tmp and work dir."""

    def as_dict(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "file_bytes": self.file_bytes, "open_files": self.open_files,
                "nproc": self.nproc, "output_bytes": self.output_bytes, "output_hard_bytes": self.output_hard_bytes}


@dataclass(frozen=True)
class BatchJob:
    """One program for `run_batch`: `code`, then `tests` against it (`check(candidate)` needs `entry_point`)."""

    code: str
    tests: str | None = None
    entry_point: str | None = None
    timeout_s: float = 10.0


def isolation_level() -> str:
    """The isolation level in force here (probed once): bwrap, netns+uid, netns, uid or process."""
    return iso.current().level


def run_python(
    code: str,
    tests: str | None = None,
    entry_point: str | None = None,
    timeout_s: float = 10.0,
    limits: Limits | None = None,
) -> ExecutionResult:
    """Execute `code`, then `tests` against it, in the sandbox; the verdict comes from the harness or not at all."""
    return run_batch([BatchJob(code, tests, entry_point, timeout_s)], workers=1, limits=limits)[0]


def run_batch(jobs: list[BatchJob], workers: int | None = None, limits: Limits | None = None) -> list[ExecutionResult]:
    """Run many programs through one sandbox, up to `workers` (default: CPU count + 1) at a time; results in order."""
    if not jobs:
        return []
    level = iso.current().level
    results, _ = _run(level, jobs, workers, limits or Limits())
    return results


def probe(level: str) -> tuple[bool, dict, str]:
    """Does `level` work here? Runs one passing and one failing test through it."""
    jobs = [BatchJob("def f():\n    return 1\n", "assert f() == 1", timeout_s=10),
            BatchJob("def f():\n    return 1\n", "assert f() == 2", timeout_s=10)]
    try:
        results, hello = _run(level, jobs, 1, Limits())
    except Exception as exc:  # noqa: BLE001 - any failure means "not this level"
        return False, {}, f"{type(exc).__name__}: {exc}"
    good, bad = results
    if good.passed and bad.status == "failed":
        return True, hello, ""
    detail = (good.errors[0].message if good.errors else good.status) + (f" | {good.stderr[-500:]}" if good.stderr else "")
    return False, hello, detail


class _Reader(threading.Thread):
    """Drains the sandbox's stderr (its own diagnostics), keeping the last `cap` bytes."""

    def __init__(self, stream, cap: int = 16 << 10) -> None:
        super().__init__(daemon=True)
        self.stream, self.cap, self.data = stream, cap, bytearray()

    def run(self) -> None:
        while True:
            chunk = self.stream.read1(65536)
            if not chunk:
                return
            self.data += chunk
            if len(self.data) > self.cap:
                del self.data[: len(self.data) - self.cap]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _run(level: str, jobs: list[BatchJob], workers: int | None, limits: Limits) -> tuple[list[ExecutionResult], dict]:
    launch = iso.launch(level)
    # One more worker than cores: while a test is being set up or torn down (kernel time), another runs.
    default = (os.cpu_count() or 1) + 1
    config = {**launch.config, "workers": max(1, min(workers or default, len(jobs))),
              "limits": limits.as_dict(), "tmpfs_bytes": limits.tmpfs_bytes}
    started = time.monotonic()
    results: dict[int, dict] = {}
    hello: dict = {}
    proc = subprocess.Popen(launch.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=launch.env, cwd=launch.cwd, start_new_session=True, close_fds=True)
    stderr = _Reader(proc.stderr)
    stderr.start()

    def feed() -> None:
        try:
            proc.stdin.write(iso.forkserver_code())
            proc.stdin.write((json.dumps(config) + "\n").encode())
            for index, job in enumerate(jobs):
                line = {"id": index, "code": job.code, "tests": job.tests, "entry_point": job.entry_point,
                        "timeout_s": float(job.timeout_s)}
                proc.stdin.write((json.dumps(line) + "\n").encode())
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    parallel = config["workers"]
    budget = STARTUP_S + sum(job.timeout_s + 1.0 for job in jobs) / parallel + 5.0 * math.ceil(len(jobs) / parallel)
    watchdog = threading.Timer(budget, _kill_tree, args=(proc,))
    watchdog.daemon = True
    watchdog.start()
    try:
        for raw in proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if "hello" in message:
                hello = message["hello"] if isinstance(message["hello"], dict) else {}
                continue
            index = message.get("id")
            if isinstance(index, int) and 0 <= index < len(jobs) and index not in results:
                results[index] = message
                if len(results) == len(jobs):
                    break
    finally:
        watchdog.cancel()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        _kill_tree(proc)  # whatever is left of the sandbox goes, whatever it is doing
        proc.wait()
        writer.join(timeout=2)
        stderr.join(timeout=2)
        for stream in (proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        launch.cleanup()
    elapsed_ms = int((time.monotonic() - started) * 1000)
    out = []
    for index in range(len(jobs)):
        if index in results:
            out.append(_to_result(results[index], level))
        else:
            why = stderr.text().strip()[-1500:] or f"exit status {proc.returncode}"
            message = f"the sandbox ended before this program's verdict ({why})"
            out.append(ExecutionResult(status="error", passed=False, duration_ms=elapsed_ms, isolation=level,
                                       errors=[ExecError(kind="SandboxError", message=message[:2000])]))
    return out, hello


def _kill_tree(proc: subprocess.Popen) -> None:
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass


def _to_result(raw: dict, level: str) -> ExecutionResult:
    tests = [TestOutcome(**{k: t.get(k) for k in ("id", "status", "line", "source", "message")})
             for t in raw.get("tests") or []]
    errors = [ExecError(kind=str(e.get("kind") or "Error"), message=str(e.get("message") or e.get("kind") or ""),
                        line=e.get("line") if isinstance(e.get("line"), int) else None, file=e.get("file"))
              for e in raw.get("errors") or []]
    status = raw.get("status", "error")
    if status not in ("passed", "failed", "error", "timeout", "build_error", "no_tests"):
        status = "error"
    passed_count = sum(t.status == "passed" for t in tests)
    # Recomputed here rather than trusted: a pass needs tests, all of them passed, and no error.
    all_passed = bool(tests) and passed_count == len(tests) and not errors
    if status == "passed" and not all_passed:
        status = "failed"
    first = raw.get("first_failure")
    return ExecutionResult(
        status=status,
        passed=status == "passed" and all_passed,
        tests_passed=passed_count,
        tests_total=len(tests),
        errors=errors,
        tests=tests,
        stdout=str(raw.get("stdout") or ""),
        stderr=str(raw.get("stderr") or ""),
        duration_ms=int(raw.get("duration_ms") or 0),
        exit_code=raw.get("exit_code") if isinstance(raw.get("exit_code"), int) else None,
        isolation=level,
        first_failure=first if isinstance(first, str) else None,
    )
