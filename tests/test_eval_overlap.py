"""An adapter trained on a benchmark's own prompts is flagged when it is evaluated on that benchmark."""

from __future__ import annotations

import json
import time

import anyio
import pytest

from conftest import call
from roopik_rl_mcp.evaluation.tasks import load_tasks
from test_jobs import log_pairs

pytestmark = pytest.mark.anyio


async def wait_done(client, job_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while (state := await call(client, "job_status", job_id=job_id))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        await anyio.sleep(0.5)
    return state


async def test_training_pairs_overlapping_the_benchmark_are_a_warning(client, store, tmp_path):
    leaked = load_tasks(task_ids=["HumanEval/1"])[0]
    await log_pairs(client)  # 4 pairs of small functions, none from HumanEval
    await call(client, "log_preference", prompt=leaked.prompt, chosen=leaked.canonical_solution,
               rejected="    return []\n", chosen_reward=1.0, rejected_reward=0.0)
    dpo = await call(client, "start_dpo", max_steps=2, batch_size=2, max_length=64)
    trained = await wait_done(client, dpo["job_id"])
    assert trained["status"] == "succeeded", trained.get("log_tail")
    adapter = trained["output_dir"]

    started = await call(client, "evaluate_checkpoint", model=adapter, limit=3, max_new_tokens=8)
    [warning] = started["warnings"]
    assert warning.startswith("adapter: 1 of its 5 training rows") and "(HumanEval/1)" in warning
    assert "pairs.jsonl" in warning, "the data the adapter's summary names"
    done = await wait_done(client, started["job_id"])
    assert done["status"] == "succeeded", done.get("log_tail")
    assert done["result"]["warnings"] == [warning]

    own = tmp_path / "mine.jsonl"  # a benchmark the pairs do not touch: no warning
    own.write_text(json.dumps({"task_id": "mine/0", "prompt": "def one():\n    \"\"\"Return one.\"\"\"\n",
                               "test": "def check(candidate):\n    assert candidate() == 1\n", "entry_point": "one"}) + "\n")
    clean = await call(client, "evaluate_checkpoint", model=adapter, benchmark=str(own), max_new_tokens=8)
    assert clean["warnings"] == []
    finished = await wait_done(client, clean["job_id"])
    assert finished["status"] == "succeeded" and finished["result"]["warnings"] == []
