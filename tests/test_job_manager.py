"""The job manager shared by several server processes on one data dir (one per MCP client)."""

from __future__ import annotations

import sys
import threading

from roopik_rl_mcp.jobs import JobManager
from roopik_rl_mcp.store import Store

SLEEP = [sys.executable, "-c", "import time; time.sleep(30)"]


def sleeper(manager: JobManager) -> dict:
    return manager.submit("dpo", None, {}, argv=lambda config: SLEEP)


def test_a_queued_job_is_started_once_when_two_managers_race(home):
    first = JobManager(Store(home / "episodes.db"), max_running=1)
    second = JobManager(Store(home / "episodes.db"), max_running=1)
    running, queued = sleeper(first), sleeper(first)
    assert (running["status"], queued["status"]) == ("running", "queued")

    # The slot frees up (as if another process cancelled it) without either manager refreshing yet.
    first._terminate(first.store.get("jobs", running["id"]))
    first.store.update("jobs", running["id"], {"status": "cancelled"})
    barrier = threading.Barrier(2)

    def race(manager: JobManager) -> None:
        barrier.wait()
        manager.refresh_all()

    threads = [threading.Thread(target=race, args=(m,)) for m in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started_by = [m for m in (first, second) if queued["id"] in m._children]
    assert len(started_by) == 1, "exactly one manager may start the queued job"
    assert second.store.get("jobs", queued["id"])["status"] == "running"
    started_by[0].cancel(queued["id"])
    assert first.store.count("jobs", "status = 'running'") == 0


def test_a_job_whose_process_vanished_is_marked_failed(home):
    manager = JobManager(Store(home / "episodes.db"))
    job = manager.submit("dpo", None, {}, argv=lambda config: [sys.executable, "-c", "raise SystemExit(3)"])
    manager._children[job["id"]].wait()
    status = manager.status(job["id"])
    assert status.status == "failed" and "code 3" in status.error
