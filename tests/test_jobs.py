"""start_dpo, evaluate_checkpoint, job_status, cancel_job, list_jobs: real subprocesses on the tiny model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from conftest import call

pytestmark = pytest.mark.anyio

PAIRS = [
    ("def add(a, b):\n", "    return a + b\n", "    return a - b\n"),
    ("def is_even(n):\n", "    return n % 2 == 0\n", "    return n % 2 == 1\n"),
    ("def first(xs):\n", "    return xs[0]\n", "    return xs[1]\n"),
    ("def square(x):\n", "    return x * x\n", "    return x + x\n"),
]


async def wait_done(client: Client, job_id: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        state = await call(client, "job_status", job_id=job_id)
        if state["status"] not in ("queued", "running"):
            return state
        assert time.monotonic() < deadline, f"job {job_id} still {state['status']} after {timeout_s} s"
        await anyio.sleep(0.5)


async def log_pairs(client: Client) -> None:
    for prompt, chosen, rejected in PAIRS:
        await call(client, "log_preference", prompt=prompt, chosen=chosen, rejected=rejected,
                   chosen_reward=0.9, rejected_reward=0.3)


async def test_dpo_job_trains_an_adapter_that_evaluates_against_its_base(client, store):
    await log_pairs(client)
    started = await call(client, "start_dpo", max_steps=4, batch_size=2, max_length=64, name="smoke")
    assert started["n_pairs"] == 4 and started["status"] in ("queued", "running")

    done = await wait_done(client, started["job_id"])
    assert done["status"] == "succeeded", done.get("log_tail")
    assert done["step"] == done["max_steps"] == 4 and done["progress"] == 1.0
    assert "loss" in done["metrics"] and "rewards/accuracies" in done["metrics"]
    adapter = Path(done["output_dir"])
    assert (adapter / "adapter_config.json").is_file()
    assert done["result"]["n_pairs"] == 4

    evaluation = await call(client, "evaluate_checkpoint", model=str(adapter), limit=2, max_new_tokens=8)
    result = (await wait_done(client, evaluation["job_id"]))
    assert result["status"] == "succeeded", result.get("log_tail")
    models = {m["label"]: m for m in result["result"]["models"]}
    assert set(models) == {"base", "adapter"}
    for model in models.values():
        assert model["total"] == 2 and 0.0 <= model["pass_at_k"]["pass@1"] <= 1.0
        assert {t["task_id"] for t in model["per_task"]} == {"HumanEval/0", "HumanEval/1"}
    assert len(result["result"]["comparison"]) == 2
    assert store.count("evaluations") == 1
    listed = await call(client, "list_jobs")
    assert [j["job_id"] for j in listed["jobs"]] == [evaluation["job_id"], started["job_id"]]


async def test_cancel_stops_a_running_job_and_queued_jobs_wait(client, store, monkeypatch):
    await log_pairs(client)
    long = await call(client, "start_dpo", max_steps=10_000, batch_size=2, max_length=64)
    queued = await call(client, "start_dpo", max_steps=2, batch_size=2, max_length=64)
    assert queued["status"] == "queued", "one job at a time by default"
    cancelled_queued = await call(client, "cancel_job", job_id=queued["job_id"])
    assert cancelled_queued["status"] == "cancelled"

    job = store.get("jobs", long["job_id"])
    cancelled = await call(client, "cancel_job", job_id=long["job_id"])
    assert cancelled["status"] == "cancelled"
    import psutil

    assert not psutil.pid_exists(job["pid"]) or psutil.Process(job["pid"]).status() == psutil.STATUS_ZOMBIE
    again = await call(client, "cancel_job", job_id=long["job_id"])
    assert again["status"] == "cancelled"


async def test_jobs_survive_a_server_restart(home):
    """The job outlives the server process that started it; a new server process reports its end."""
    from test_stdio_http import server_params

    async with Client(server_params(home), read_timeout_seconds=60) as first:
        await log_pairs(first)
        started = await call(first, "start_dpo", max_steps=3, batch_size=2, max_length=64)
    # The first server process has exited with its stdio session.
    async with Client(server_params(home), read_timeout_seconds=60) as second:
        done = await wait_done(second, started["job_id"])
        assert done["status"] == "succeeded", done.get("log_tail")
        assert done["step"] == 3


async def test_failed_job_reports_error_and_log_tail(client, tmp_path):
    await log_pairs(client)
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "nonsense"}))
    started = await call(client, "start_dpo", base_model=str(broken), max_steps=2, max_length=64)
    done = await wait_done(client, started["job_id"])
    assert done["status"] == "failed"
    assert done["error"] and done["log_tail"]
