"""Run untrusted Python: batches of programs through one warm fork server inside one sandbox.

`run_batch` hands the jobs to a sandbox (see isolation.py) with the fork server (forkserver.py) in it and
reads one verdict per job back; `run_python` is a batch of one. By default that is the shared *warm*
sandbox, started once and kept while calls keep coming (IDLE_S), so a single call pays no start-up; an
explicit `workers` gets a sandbox of its own for the call. The server process never forks a child of its
own that runs code: `subprocess` spawns the sandbox, and every fork happens inside, from the
single-threaded fork server.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
    return run_batch([BatchJob(code, tests, entry_point, timeout_s)], limits=limits)[0]


def run_batch(jobs: list[BatchJob], workers: int | None = None, limits: Limits | None = None) -> list[ExecutionResult]:
    """Run many programs, results in order.

    By default through the shared warm sandbox (its fork server is already running: no start-up cost,
    CPU count + 1 tests at a time, calls of a few jobs go ahead of queued bulk work). An explicit `workers`
    gets a sandbox of its own with exactly that parallelism, started and ended with the call."""
    if not jobs:
        return []
    level = iso.current().level
    limits = limits or Limits()
    if workers is None:
        return _run_warm(level, jobs, limits)
    results, _ = _run(level, jobs, workers, limits)
    return results


def prewarm() -> None:
    """Start the shared sandbox now (the server does this in the background at start-up)."""
    _warm_sandbox(iso.current().level)


def probe(level: str) -> tuple[bool, dict, str]:
    """Does `level` work here? Runs one passing and one failing test through it (in a sandbox of its own)."""
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


def _job_line(job_id: int, job: BatchJob, limits: dict | None = None, urgent: bool = False) -> bytes:
    line = {"id": job_id, "code": job.code, "tests": job.tests, "entry_point": job.entry_point,
            "timeout_s": float(job.timeout_s)}
    if limits:
        line["limits"] = limits
    if urgent:
        line["urgent"] = True
    return (json.dumps(line) + "\n").encode()


def _budget(jobs: list[BatchJob], parallel: int) -> float:
    """How long a batch may take before the sandbox counts as wedged (generous: never a test's own timeout)."""
    return STARTUP_S + sum(job.timeout_s + 1.0 for job in jobs) / parallel + 5.0 * math.ceil(len(jobs) / parallel)


def _lost(level: str, elapsed_ms: int, why: str) -> ExecutionResult:
    message = f"the sandbox ended before this program's verdict ({why})"
    return ExecutionResult(status="error", passed=False, duration_ms=elapsed_ms, isolation=level,
                           errors=[ExecError(kind="SandboxError", message=message[:2000])])


def _start(launch: iso.Launch) -> subprocess.Popen:
    return subprocess.Popen(launch.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=launch.env, cwd=launch.cwd, start_new_session=True, close_fds=True)


# -- the shared warm sandbox ----------------------------------------------------------------------------

IDLE_S = float(os.environ.get("ROOPIK_SANDBOX_IDLE_S", "120"))
"""A warm sandbox with nothing to do for this long is shut down (the next call starts another)."""
URGENT_JOBS = 4
"""Calls of at most this many jobs (a capture_feedback) run ahead of queued bulk work."""
STALLED_S = 30.0
"""A warm sandbox that owes verdicts and has said nothing for this long (plus the longest timeout among
them: a long test is silent until it ends) is killed and replaced."""


class _Call:
    """One caller's jobs in the warm sandbox: verdicts arrive from its reader thread."""

    def __init__(self, count: int) -> None:
        self.results: dict[int, dict] = {}
        self.count = count
        self.failure: str | None = None
        self.done = threading.Event()

    def deliver(self, index: int, message: dict) -> None:
        self.results.setdefault(index, message)
        if len(self.results) >= self.count:
            self.done.set()

    def fail(self, why: str) -> None:
        self.failure = why
        self.done.set()


class _WarmSandbox:
    """One long-lived sandbox whose fork server takes jobs from any thread of this process.

    Safe to share: the fork server never runs untrusted code, and every test gets its own namespaces,
    /tmp and work dir, as in a batch. Verdicts are routed back to callers by job id."""

    def __init__(self, level: str, key: tuple) -> None:
        self.level, self.key = level, key
        self.launch = iso.launch(level)
        self.workers = (os.cpu_count() or 1) + 1
        config = {**self.launch.config, "workers": self.workers, "limits": Limits().as_dict(),
                  "tmpfs_bytes": Limits().tmpfs_bytes}
        self.proc = _SPAWNER.submit(_start, self.launch).result()
        self.stderr = _Reader(self.proc.stderr)
        self.stderr.start()
        self.table_lock = threading.Lock()  # job id -> caller; never held while writing to the sandbox
        self.write_lock = threading.Lock()
        self.waiting: dict[int, tuple[_Call, int, float]] = {}  # job id -> (caller, index, timeout)
        self.next_id = 0
        self.alive = True
        self.last_heard = time.monotonic()
        self.idle_timer: threading.Timer | None = None
        self.in_flight = 0
        try:
            self.proc.stdin.write(iso.forkserver_code())
            self.proc.stdin.write((json.dumps(config) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the reader sees the sandbox gone and says why
        self.reader = threading.Thread(target=self._read, daemon=True, name="roopik-sandbox-reader")
        self.reader.start()

    def run(self, jobs: list[BatchJob], limits: Limits) -> list[ExecutionResult]:
        started = time.monotonic()
        call = _Call(len(jobs))
        limits_dict = {**limits.as_dict(), "tmpfs_bytes": limits.tmpfs_bytes}
        urgent = len(jobs) <= URGENT_JOBS
        with self.table_lock:
            if not self.alive:
                raise _SandboxGone
            first = self.next_id
            self.next_id += len(jobs)
            for index, job in enumerate(jobs):
                self.waiting[first + index] = (call, index, float(job.timeout_s))
            self.in_flight += 1
            if self.idle_timer is not None:
                self.idle_timer.cancel()
                self.idle_timer = None
        try:
            data = b"".join(_job_line(first + i, job, limits_dict, urgent) for i, job in enumerate(jobs))
            try:
                with self.write_lock:
                    self.proc.stdin.write(data)
                    self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass  # the reader fails this call when it sees the sandbox gone
            budget = _budget(jobs, self.workers)
            while not call.done.wait(min(budget, 5.0)):
                budget -= 5.0
                if budget <= 0 or self._stalled():
                    break
        finally:
            with self.table_lock:
                for index in range(len(jobs)):
                    self.waiting.pop(first + index, None)
                self.in_flight -= 1
                if self.in_flight == 0 and self.alive:
                    self.idle_timer = threading.Timer(IDLE_S, self._idle)
                    self.idle_timer.daemon = True
                    self.idle_timer.start()
        elapsed_ms = int((time.monotonic() - started) * 1000)
        if not call.done.is_set():  # wedged: replace it, and say so for what it still owed
            self.kill()
            why = f"no verdict within the call's budget; the sandbox was restarted ({self.stderr.text().strip()[-500:]})"
        else:
            why = call.failure or ""
        return [_to_result(call.results[i], self.level) if i in call.results else _lost(self.level, elapsed_ms, why)
                for i in range(len(jobs))]

    def _stalled(self) -> bool:
        with self.table_lock:
            if not self.waiting:
                return False
            longest = max(timeout for _, _, timeout in self.waiting.values())
        return time.monotonic() - self.last_heard > STALLED_S + longest

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.last_heard = time.monotonic()
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(message, dict) or "hello" in message:
                continue
            job_id = message.get("id")
            with self.table_lock:
                target = self.waiting.pop(job_id, None) if isinstance(job_id, int) else None
            if target is not None:
                call, index, _ = target
                call.deliver(index, message)
        # The sandbox is gone (idle shutdown, killed, crashed): fail whatever it still owed.
        with self.table_lock:
            self.alive = False
            owed = list(self.waiting.values())
            self.waiting.clear()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        _kill_tree(self.proc)
        self.proc.wait()
        self.stderr.join(timeout=2)
        why = self.stderr.text().strip()[-1500:] or f"exit status {self.proc.returncode}"
        for call, _, _ in owed:
            call.fail(why)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        self.launch.cleanup()

    def _idle(self) -> None:
        with self.table_lock:
            if self.in_flight:
                return
            self.alive = False  # no new calls: the next one starts a fresh sandbox
        self.close()

    def close(self) -> None:
        """No more jobs: the fork server finishes what it has and exits."""
        with self.table_lock:
            self.alive = False
        try:
            with self.write_lock:
                self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def kill(self) -> None:
        with self.table_lock:
            self.alive = False
        _kill_tree(self.proc)


class _SandboxGone(Exception):
    pass


# bubblewrap's --die-with-parent (PR_SET_PDEATHSIG) fires when the *thread* that started it ends, and the
# calling thread may be a short-lived worker (anyio's, say): warm sandboxes are started from this one.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roopik-sandbox-spawner")


_WARM_LOCK = threading.Lock()
_WARM: _WarmSandbox | None = None


def _warm_key(level: str) -> tuple:
    # What the launch command depends on: a change (say ROOPIK_RL_HOME moved) needs a new sandbox.
    return level, tuple(iso.hidden_paths()), tuple(iso.interpreter_paths())


def _warm_sandbox(level: str) -> _WarmSandbox:
    """The shared sandbox for `level`, started (or replaced) if there is none that takes calls."""
    global _WARM
    key = _warm_key(level)
    with _WARM_LOCK:
        if _WARM is None or not _WARM.alive or _WARM.key != key:
            if _WARM is not None:
                _WARM.close()
            _WARM = _WarmSandbox(level, key)
        return _WARM


def _run_warm(level: str, jobs: list[BatchJob], limits: Limits) -> list[ExecutionResult]:
    for _ in range(3):  # the one we got may have gone idle or died just now: then take the next one
        try:
            return _warm_sandbox(level).run(jobs, limits)
        except _SandboxGone:
            continue
    return _run(level, jobs, None, limits)[0]  # sandboxes die as they start: a batch of its own says why


def shutdown() -> None:
    """Close the shared sandbox (at exit; tests)."""
    global _WARM
    with _WARM_LOCK:
        warm, _WARM = _WARM, None
    if warm is not None:
        warm.close()
        warm.reader.join(timeout=5)
        if warm.reader.is_alive():
            warm.kill()


atexit.register(shutdown)


# -- a sandbox of its own for one batch ------------------------------------------------------------------


def _run(level: str, jobs: list[BatchJob], workers: int | None, limits: Limits) -> tuple[list[ExecutionResult], dict]:
    launch = iso.launch(level)
    # One more worker than cores: while a test is being set up or torn down (kernel time), another runs.
    default = (os.cpu_count() or 1) + 1
    config = {**launch.config, "workers": max(1, min(workers or default, len(jobs))),
              "limits": limits.as_dict(), "tmpfs_bytes": limits.tmpfs_bytes}
    started = time.monotonic()
    results: dict[int, dict] = {}
    hello: dict = {}
    proc = _start(launch)
    stderr = _Reader(proc.stderr)
    stderr.start()

    def feed() -> None:
        try:
            proc.stdin.write(iso.forkserver_code())
            proc.stdin.write((json.dumps(config) + "\n").encode())
            for index, job in enumerate(jobs):
                proc.stdin.write(_job_line(index, job))
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    watchdog = threading.Timer(_budget(jobs, config["workers"]), _kill_tree, args=(proc,))
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
    why = stderr.text().strip()[-1500:] or f"exit status {proc.returncode}"
    out = [_to_result(results[i], level) if i in results else _lost(level, elapsed_ms, why) for i in range(len(jobs))]
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
