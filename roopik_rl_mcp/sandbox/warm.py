"""The shared warm sandbox: one long-lived sandbox per server process, taking jobs from any thread.

Started once (the server does it in the background at start-up) and kept while calls keep coming, so a
single call pays no sandbox start-up. Sharing it adds nothing a batch does not already do: the fork
server never runs untrusted code, and every test gets its own namespaces, /tmp, work dir and key."""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from roopik_rl_mcp.sandbox import isolation as iso
from roopik_rl_mcp.sandbox import oneshot
from roopik_rl_mcp.sandbox.models import ExecError, ExecutionResult
from roopik_rl_mcp.sandbox.wire import (BatchJob, Limits, StderrTail, budget, close_sandbox, default_workers, job_line,
                                        kill_tree, lost_verdict, sandbox_preamble, spawn_sandbox, to_result)

IDLE_S = float(os.environ.get("ROOPIK_SANDBOX_IDLE_S", "120"))
"""A warm sandbox with nothing to do for this long is shut down (the next call starts another)."""
URGENT_JOBS = 4
"""Calls of at most this many jobs (a capture_feedback) run ahead of queued bulk work."""
WRITE_SLICE = 16
"""Jobs encoded and written to the sandbox at a time."""
STALLED_S = 30.0
"""A warm sandbox that owes verdicts and has said nothing for this long (plus the longest timeout among
them: a long test is silent until it ends) is killed and replaced."""


class _Call:
    """One caller's jobs in the warm sandbox: verdicts arrive from its reader thread, which turns each into an
    ExecutionResult as it comes (while the sandbox works on the rest) rather than all of them at the end."""

    def __init__(self, count: int, level: str) -> None:
        self.results: dict[int, ExecutionResult] = {}
        self.count, self.level = count, level
        self.failure: str | None = None
        self.done = threading.Event()

    def deliver(self, index: int, message: dict) -> None:
        if index not in self.results:
            try:
                self.results[index] = to_result(message, self.level)
            except ValueError as exc:  # a verdict that does not fit the model fails its job, not the reader
                self.results[index] = ExecutionResult(
                    status="error", passed=False, isolation=self.level,
                    errors=[ExecError(kind="HarnessError", message=f"unreadable verdict: {exc}"[:2000])])
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
        self.workers = default_workers()
        self.proc = _SPAWNER.submit(spawn_sandbox, self.launch).result()
        self.stderr = StderrTail(self.proc.stderr)
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
            self.proc.stdin.write(sandbox_preamble(self.launch, self.workers, Limits()))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the reader sees the sandbox gone and says why
        self.reader = threading.Thread(target=self._read, daemon=True, name="roopik-sandbox-reader")
        self.reader.start()

    def run(self, jobs: list[BatchJob], limits: Limits) -> list[ExecutionResult]:
        started = time.monotonic()
        call = _Call(len(jobs), self.level)
        limits_dict = limits.as_dict()
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
            try:
                # In slices: the sandbox starts on the first jobs while the rest are still being encoded.
                for offset in range(0, len(jobs), WRITE_SLICE):
                    data = b"".join(job_line(first + i, jobs[i], limits_dict, urgent)
                                    for i in range(offset, min(offset + WRITE_SLICE, len(jobs))))
                    with self.write_lock:
                        self.proc.stdin.write(data)
                        self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass  # the reader fails this call when it sees the sandbox gone
            left = budget(jobs, self.workers)
            while not call.done.wait(min(left, 5.0)):
                left -= 5.0
                if left <= 0 or self._stalled():
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
            tail = self.stderr.text().strip()[-500:]
            why = f"no verdict within the call's budget; the sandbox was restarted ({tail})"
        else:
            why = call.failure or ""
        return [call.results[i] if i in call.results else lost_verdict(self.level, elapsed_ms, why)
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
        close_sandbox(self.proc, self.stderr, self.launch)
        why = self.stderr.text().strip()[-1500:] or f"exit status {self.proc.returncode}"
        for call, _, _ in owed:
            call.fail(why)

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
        kill_tree(self.proc)


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


def sandbox(level: str) -> _WarmSandbox:
    """The shared sandbox for `level`, started (or replaced) if there is none that takes calls."""
    global _WARM
    key = _warm_key(level)
    with _WARM_LOCK:
        if _WARM is None or not _WARM.alive or _WARM.key != key:
            if _WARM is not None:
                _WARM.close()
            _WARM = _WarmSandbox(level, key)
        return _WARM


def run(level: str, jobs: list[BatchJob], limits: Limits) -> list[ExecutionResult]:
    """`jobs` through the shared sandbox for `level`, results in order."""
    for _ in range(3):  # the one we got may have gone idle or died just now: then take the next one
        try:
            return sandbox(level).run(jobs, limits)
        except _SandboxGone:
            continue
    # Sandboxes die as they start: a batch of its own says why.
    return oneshot.run_in_own_sandbox(iso.launch(level), level, jobs, None, limits)[0]


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
