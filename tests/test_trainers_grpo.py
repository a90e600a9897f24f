"""GRPO with sandbox rewards: the reward function on known completions, and a real job on the tiny model."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from conftest import call, call_error
from roopik_rl_mcp.evaluation.tasks import load_tasks
from roopik_rl_mcp.rewards import sandbox_reward


def test_the_reward_is_tests_passed_minus_the_length_penalty():
    task = load_tasks(limit=1)[0]
    good, empty = task.canonical_solution, "    return None\n"
    half = "    return True\n"  # HumanEval/0's check has both True and False cases
    rewards = sandbox_reward([task.prompt] * 3, [good, empty, half], [task.test] * 3, [task.entry_point] * 3)
    assert rewards[0] == 1.0 and rewards[1] == 0.0 and 0.0 < rewards[2] < 1.0
    penalised = sandbox_reward([task.prompt], [good], [task.test], [task.entry_point], length_penalty=0.1)
    assert penalised[0] == pytest.approx(1.0 - 0.1 * len(good) / 100)
    conversational = sandbox_reward([task.prompt], [[{"role": "assistant", "content": good}]], [task.test],
                                    [task.entry_point])
    assert conversational == [1.0]


@pytest.mark.anyio
async def test_a_grpo_job_trains_with_sandbox_rewards(client, store):
    assert "no tasks with tests" in await call_error(client, "start_training", kind="grpo", tasks="episodes")
    started = await call(client, "start_training", kind="grpo", tasks="humaneval", limit=2,
                         grpo={"max_steps": 2, "num_generations": 2, "max_completion_length": 16})
    assert started["kind"] == "grpo" and started["n_examples"] == 2
    deadline = time.monotonic() + 300
    while (state := await call(client, "job_status", job_id=started["job_id"]))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        await anyio.sleep(0.5)
    assert state["status"] == "succeeded", state.get("log_tail")
    assert state["result"]["metrics"]["steps"] == 2 and len(state["result"]["reward_history"]) == 2
    assert (Path(state["output_dir"]) / "adapter_config.json").is_file()
    plotted = await call(client, "job_plot", job_id=started["job_id"])
    assert "reward" in plotted["metrics"], "GRPO's reward is logged while it runs, and drawn"
