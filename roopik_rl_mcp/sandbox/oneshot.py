"""A sandbox of its own for one batch, started and ended with the call: `run_batch(..., workers=N)`, the probe
of each isolation level, and the warm sandbox's fallback when warm sandboxes die as they start.

Depends only on wire.py (and the models): isolation.py calls `probe` with a way to make its launch, and
python_runner.py and warm.py call `run_in_own_sandbox` with one, so no module of the sandbox imports back."""

from __future__ import annotations

import json
import threading
import time
from typing import Callable

from roopik_rl_mcp.sandbox.models import ExecutionResult
from roopik_rl_mcp.sandbox.wire import (BatchJob, Launch, Limits, StderrTail, budget, close_sandbox, default_workers,
                                        job_line, kill_tree, lost_verdict, sandbox_preamble, spawn_sandbox,
                                        to_result)


def run_in_own_sandbox(launch: Launch, level: str, jobs: list[BatchJob], workers: int | None,
                       limits: Limits) -> tuple[list[ExecutionResult], dict]:
    """Run `jobs` in a sandbox started from `launch` (of isolation `level`): results in order, and the fork
    server's hello. A job whose verdict never came is an error (`lost_verdict`), never a pass."""
    parallel = max(1, min(workers or default_workers(), len(jobs)))
    started = time.monotonic()
    results: dict[int, dict] = {}
    hello: dict = {}
    proc = spawn_sandbox(launch)
    stderr = StderrTail(proc.stderr)
    stderr.start()

    def feed() -> None:
        try:
            proc.stdin.write(sandbox_preamble(launch, parallel, limits))
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
        close_sandbox(proc, stderr, launch)
        writer.join(timeout=2)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    why = stderr.text().strip()[-1500:] or f"exit status {proc.returncode}"
    out = [to_result(results[i], level) if i in results else lost_verdict(level, elapsed_ms, why)
           for i in range(len(jobs))]
    return out, hello


def probe(level: str, make_launch: Callable[[], Launch]) -> tuple[bool, dict, str]:
    """Does `level` work here? (ok, hello, why not): one passing and one failing test, in a sandbox of its own."""
    jobs = [BatchJob("def f():\n    return 1\n", "assert f() == 1", timeout_s=10),
            BatchJob("def f():\n    return 1\n", "assert f() == 2", timeout_s=10)]
    try:
        results, hello = run_in_own_sandbox(make_launch(), level, jobs, 1, Limits())
    except Exception as exc:  # noqa: BLE001 - any failure means "not this level"
        return False, {}, f"{type(exc).__name__}: {exc}"
    good, bad = results
    if good.passed and bad.status == "failed":
        return True, hello, ""
    detail = (good.errors[0].message if good.errors else good.status) + (
        f" | {good.stderr[-500:]}" if good.stderr else "")
    return False, hello, detail
