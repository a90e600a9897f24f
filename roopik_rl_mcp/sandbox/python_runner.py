"""Run untrusted Python in a child interpreter with limits, a private work dir and no secrets.

The child is `python -I harness.py`; the harness limits itself (rlimits) before running any of the
code, so no `preexec_fn` is needed (which is unsafe in the threaded server). Its own session lets a
timeout kill the whole process group. When `unshare` can create user and network namespaces, the
child also runs without any network (loopback included).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from roopik_rl_mcp.sandbox.models import ExecError, ExecutionResult, TestOutcome

HARNESS = Path(__file__).with_name("harness.py")
GRACE_S = 2.0
"""Extra wall time after `timeout_s` before the process group is killed: the harness's own alarm fires first."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    open_files: int = 64
    output_bytes: int = 64 << 10
    """Per stream; the rest is read and dropped, and a visible marker says how much."""


@lru_cache(maxsize=1)
def isolation_level() -> str:
    """`netns` when an unprivileged user+network namespace can be made here, else `process`."""
    unshare = shutil.which("unshare")
    if unshare and sys.platform.startswith("linux"):
        try:
            done = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=5)
            if done.returncode == 0:
                return "netns"
        except (OSError, subprocess.SubprocessError):
            pass
    return "process"


def scrubbed_env(workdir: str) -> dict[str, str]:
    """A minimal environment: nothing from the server's (API keys, tokens) reaches the code."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
    }


class _CappedReader(threading.Thread):
    """Drains a pipe; keeps the first `cap` bytes, counts the rest (so a flood cannot exhaust memory)."""

    def __init__(self, stream, cap: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.cap = stream, cap
        self.kept = bytearray()
        self.dropped = 0

    def run(self) -> None:
        while True:
            chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else self.stream.read(65536)
            if not chunk:
                break
            room = self.cap - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]
            self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        out = self.kept.decode("utf-8", errors="replace")
        if self.dropped:
            out += f"\n...[truncated {self.dropped} bytes]"
        return out


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_python(
    code: str,
    tests: str | None = None,
    entry_point: str | None = None,
    timeout_s: float = 10.0,
    limits: Limits | None = None,
) -> ExecutionResult:
    """Execute `code`, then `tests` against it; the verdict comes from the harness or not at all."""
    limits = limits or Limits()
    workdir = tempfile.mkdtemp(prefix="roopik-sbx-")
    os.chmod(workdir, 0o700)
    nonce = secrets.token_hex(16)
    verdict_path = os.path.join(workdir, f".verdict-{secrets.token_hex(8)}")
    job = {
        "code": code,
        "tests": tests,
        "entry_point": entry_point,
        "timeout_s": timeout_s,
        "nonce": nonce,
        "verdict_path": verdict_path,
        "limits": {
            "cpu_s": int(timeout_s) + 2,
            "memory_bytes": limits.memory_bytes,
            "file_bytes": limits.file_bytes,
            "open_files": limits.open_files,
        },
    }
    level = isolation_level()
    argv = [sys.executable, "-I", "-X", "utf8", str(HARNESS)]
    if level == "netns":
        argv = ["unshare", "-rn", "--", *argv]
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=scrubbed_env(workdir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
        readers = [_CappedReader(proc.stdout, limits.output_bytes), _CappedReader(proc.stderr, limits.output_bytes)]
        for reader in readers:
            reader.start()
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        timed_out = False
        try:
            proc.wait(timeout=timeout_s + GRACE_S)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc)  # whatever the code left behind in its group goes too
        proc.wait()
        for reader in readers:
            reader.join(timeout=2)
        duration_ms = int((time.monotonic() - started) * 1000)
        verdict = _read_verdict(verdict_path, nonce)
        return _result(verdict, proc.returncode, timed_out, readers, duration_ms, level)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _read_verdict(path: str, nonce: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            verdict = json.load(handle)
    except (OSError, ValueError):
        return None
    return verdict if isinstance(verdict, dict) and verdict.get("nonce") == nonce else None


def _result(verdict, returncode, timed_out, readers, duration_ms, level) -> ExecutionResult:
    stdout, stderr = (reader.text() for reader in readers)
    common = dict(stdout=stdout, stderr=stderr, duration_ms=duration_ms, exit_code=returncode, isolation=level)
    if verdict is None:
        if timed_out:
            error = ExecError(kind="Timeout", message="wall-clock time limit reached; the process group was killed")
            return ExecutionResult(status="timeout", passed=False, errors=[error], **common)
        if returncode is not None and returncode < 0:
            name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
            message = f"the process was killed by {name} (CPU or memory limit, or a crash) before the tests finished"
            return ExecutionResult(status="error", passed=False, errors=[ExecError(kind="Killed", message=message)], **common)
        message = f"the process exited with code {returncode} before the tests finished"
        return ExecutionResult(status="error", passed=False, errors=[ExecError(kind="EarlyExit", message=message)], **common)

    tests = [TestOutcome(**{k: t.get(k) for k in ("id", "status", "line", "source", "message")}) for t in verdict.get("tests", [])]
    errors = [ExecError(**e) for e in verdict.get("errors", [])]
    passed_count = sum(t.status == "passed" for t in tests)
    status = verdict.get("status", "error")
    # Recomputed here rather than trusted: a pass needs tests, all of them passed, and no error.
    all_passed = bool(tests) and passed_count == len(tests) and not errors
    if status == "passed" and not all_passed:
        status = "failed"
    return ExecutionResult(
        status=status,
        passed=status == "passed" and all_passed,
        tests_passed=passed_count,
        tests_total=len(tests),
        errors=errors,
        tests=tests,
        **common,
    )
