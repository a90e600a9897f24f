"""Talking to a sandbox process: what goes in (jobs, limits), what comes out (verdicts), and its lifetime.

Shared by the one-off sandbox of a single batch (oneshot.py) and the shared warm sandbox (warm.py). Depends on
no other module of the sandbox's but the models and the payload (bundle.py): isolation.py builds the `Launch`,
these functions run it."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import threading
import shutil
from dataclasses import dataclass

from roopik_rl_mcp.sandbox import bundle
from roopik_rl_mcp.sandbox.models import ExecError, ExecutionResult, TestOutcome

STARTUP_S = 30.0
"""How long a sandbox may take to start before its batch is failed."""


@dataclass
class Launch:
    """Everything needed to start one sandbox: argv, host work dir (if any), env, cwd, fork-server config
    (made by isolation.launch)."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    config: dict
    host_workdir: str | None = None

    def cleanup(self) -> None:
        if self.host_workdir:
            shutil.rmtree(self.host_workdir, ignore_errors=True)


def default_workers() -> int:
    """Tests at once when the caller does not say: one more than cores, so that while a test is being set
    up or torn down (kernel time) another one runs."""
    return (os.cpu_count() or 1) + 1


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
                "nproc": self.nproc, "output_bytes": self.output_bytes, "output_hard_bytes": self.output_hard_bytes,
                "tmpfs_bytes": self.tmpfs_bytes}


@dataclass(frozen=True)
class BatchJob:
    """One program for `run_batch`: `code`, then `tests` against it (`check(candidate)` needs `entry_point`)."""

    code: str
    tests: str | None = None
    entry_point: str | None = None
    timeout_s: float = 10.0


class StderrTail(threading.Thread):
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


def job_line(job_id: int, job: BatchJob, limits: dict | None = None, urgent: bool = False) -> bytes:
    """One job as the fork server reads it (a JSON line; `urgent` jobs go ahead of queued bulk work)."""
    line = {"id": job_id, "code": job.code, "tests": job.tests, "entry_point": job.entry_point,
            "timeout_s": float(job.timeout_s)}
    if limits:
        line["limits"] = limits
    if urgent:
        line["urgent"] = True
    return (json.dumps(line) + "\n").encode()


def budget(jobs: list[BatchJob], parallel: int) -> float:
    """How long a batch may take before the sandbox counts as wedged (generous: never a test's own timeout)."""
    return STARTUP_S + sum(job.timeout_s + 1.0 for job in jobs) / parallel + 5.0 * math.ceil(len(jobs) / parallel)


def lost_verdict(level: str, elapsed_ms: int, why: str) -> ExecutionResult:
    """The result of a job whose sandbox ended before its verdict came: an error, never a pass."""
    message = f"the sandbox ended before this program's verdict ({why})"
    return ExecutionResult(status="error", passed=False, duration_ms=elapsed_ms, isolation=level,
                           errors=[ExecError(kind="SandboxError", message=message[:2000])])


def spawn_sandbox(launch: Launch) -> subprocess.Popen:
    """Start the sandbox process (its own session, so that `kill_tree` reaches all of it)."""
    return subprocess.Popen(launch.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=launch.env, cwd=launch.cwd, start_new_session=True, close_fds=True)


def sandbox_preamble(launch: Launch, workers: int, limits: Limits) -> bytes:
    """What a sandbox reads first: the inside payload (bundle.py), then its config line (default limits per job)."""
    config = {**launch.config, "workers": workers, "limits": limits.as_dict()}
    return bundle.payload() + (json.dumps(config) + "\n").encode()


def close_sandbox(proc: subprocess.Popen, stderr: StderrTail, launch: Launch) -> None:
    """After the last verdict (or none): give the sandbox a moment, then kill what is left and clean up."""
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    kill_tree(proc)  # whatever is left of the sandbox goes, whatever it is doing
    proc.wait()
    stderr.join(timeout=2)
    for stream in (proc.stdout, proc.stderr):
        try:
            stream.close()
        except OSError:
            pass
    launch.cleanup()


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL to the sandbox's whole session."""
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass


def to_result(raw: dict, level: str) -> ExecutionResult:
    """A verdict line as an ExecutionResult, with `passed` recomputed from its tests rather than trusted."""
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
