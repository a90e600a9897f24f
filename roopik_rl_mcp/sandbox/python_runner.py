"""Run untrusted Python: batches of programs through one warm fork server inside one sandbox.

`run_batch` hands the jobs to a sandbox (see isolation.py) with the fork server (inside/) in it and
reads one verdict per job back; `run_python` is a batch of one. By default that is the shared *warm*
sandbox (warm.py), started once and kept while calls keep coming, so a single call pays no start-up; an
explicit `workers` gets a sandbox of its own for the call (oneshot.py). The server process never forks a
child of its own that runs code: `subprocess` spawns the sandbox, and every fork happens inside, from the
single-threaded fork server.
"""

from __future__ import annotations

from roopik_rl_mcp.sandbox import isolation as iso
from roopik_rl_mcp.sandbox import oneshot, warm
from roopik_rl_mcp.sandbox.models import ExecutionResult
from roopik_rl_mcp.sandbox.wire import BatchJob, Limits

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
    results, _ = oneshot.run_in_own_sandbox(iso.launch(level), level, jobs, workers, limits)
    return results


def prewarm() -> None:
    """Start the shared sandbox now (the server does this in the background at start-up)."""
    warm.sandbox(iso.current().level)


def probe(level: str) -> tuple[bool, dict, str]:
    """Does `level` work here? Runs one passing and one failing test through it (in a sandbox of its own)."""
    return oneshot.probe(level, lambda: iso.launch(level))
