"""start_training(kind="reward_model"): a Bradley-Terry reward model on the pairs, a real job on the tiny model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from conftest import call, call_error

pytestmark = pytest.mark.anyio

PAIRS = [("def add(a, b):\n", "    return a + b\n", "    return a - b\n"),
         ("def square(x):\n", "    return x * x\n", "    return x + x\n"),
         ("def neg(x):\n", "    return -x\n", "    return x\n"),
         ("def inc(x):\n", "    return x + 1\n", "    return x - 1\n"),
         ("def double(x):\n", "    return 2 * x\n", "    return x / 2\n")]


async def test_a_reward_model_trains_and_reports_held_out_accuracy(client, store):
    assert "no preference pairs" in await call_error(client, "start_training", kind="reward_model")
    await call(client, "log_preference", pairs=[{"prompt": p, "chosen": c, "rejected": r, "chosen_reward": 0.9,
                                                 "rejected_reward": 0.2} for p, c, r in PAIRS])
    started = await call(client, "start_training", kind="reward_model",
                         reward_model={"max_steps": 6, "max_length": 64, "eval_fraction": 0.2})
    assert started["kind"] == "reward_model" and started["n_pairs"] == 5
    deadline = time.monotonic() + 300
    while (state := await call(client, "job_status", job_id=started["job_id"]))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        await anyio.sleep(0.5)
    assert state["status"] == "succeeded", state.get("log_tail")
    metrics = state["result"]["metrics"]
    assert (metrics["n_train"], metrics["n_held_out"]) == (4, 1)
    assert 0.0 <= metrics["held_out_accuracy_after"] <= 1.0 and 0.0 <= metrics["train_accuracy_after"] <= 1.0
    adapter = json.loads((Path(state["output_dir"]) / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and adapter["base_model_name_or_path"]
