"""Run untrusted Python: batches of programs through one warm fork server inside one sandbox.

`run_batch` hands the jobs to a sandbox (see isolation.py) with the fork server (forkserver.py) in it and
reads one verdict per job back; `run_python` is a batch of one. By default that is the shared *warm*
sandbox (warm.py), started once and kept while calls keep coming, so a single call pays no start-up; an
explicit `workers` gets a sandbox of its own for the call. The server process never forks a child of its
own that runs code: `subprocess` spawns the sandbox, and every fork happens inside, from the
single-threaded fork server.
"""

from __future__ import annotations

import json
import threading
import time

from roopik_rl_mcp.sandbox import isolation as iso
from roopik_rl_mcp.sandbox import warm
from roopik_rl_mcp.sandbox.models import ExecutionResult
from roopik_rl_mcp.sandbox.wire import (BatchJob, Limits, StderrTail, budget, default_workers, end, job_line, kill_tree,
                                        lost, opening, start, to_result)

__all__ = ["BatchJob", "Limits", "isolation_level", "prewarm", "probe", "run_batch", "run_python"]


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
        return warm.run(level, jobs, limits)
    results, _ = _run(level, jobs, workers, limits)
    return results


def prewarm() -> None:
    """Start the shared sandbox now (the server does this in the background at start-up)."""
    warm.sandbox(iso.current().level)


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


def _run(level: str, jobs: list[BatchJob], workers: int | None, limits: Limits) -> tuple[list[ExecutionResult], dict]:
    launch = iso.launch(level)
    parallel = max(1, min(workers or default_workers(), len(jobs)))
    started = time.monotonic()
    results: dict[int, dict] = {}
    hello: dict = {}
    proc = start(launch)
    stderr = StderrTail(proc.stderr)
    stderr.start()

    def feed() -> None:
        try:
            proc.stdin.write(opening(launch, parallel, limits))
            for index, job in enumerate(jobs):
                proc.stdin.write(job_line(index, job))
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    watchdog = threading.Timer(budget(jobs, parallel), kill_tree, args=(proc,))
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
        end(proc, stderr, launch)
        writer.join(timeout=2)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    why = stderr.text().strip()[-1500:] or f"exit status {proc.returncode}"
    out = [to_result(results[i], level) if i in results else lost(level, elapsed_ms, why) for i in range(len(jobs))]
    return out, hello
