"""judge_output(judge="reward_model:<job_id>"): a reward model trained as a job judges episodes."""

from __future__ import annotations

import math
import time

import anyio
import pytest

from conftest import call, call_error
from roopik_rl_mcp.judge import reward_model as reward_model_judge
from test_trainers_reward_model import PAIRS

pytestmark = pytest.mark.anyio
TASK = "def add(a, b):\n"


async def _trained_reward_model(client) -> dict:
    await call(client, "log_preference", pairs=[{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS])
    started = await call(client, "start_training", kind="reward_model",
                         reward_model={"max_steps": 4, "max_length": 64, "eval_fraction": 0.0})
    deadline = time.monotonic() + 300
    while (state := await call(client, "job_status", job_id=started["job_id"]))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        await anyio.sleep(0.5)
    assert state["status"] == "succeeded", state.get("log_tail")
    return state


async def test_a_trained_reward_model_judges_episodes_from_its_own_process(client):
    job = await _trained_reward_model(client)
    judge = f"reward_model:{job['job_id']}"
    good = await call(client, "capture_feedback", task=TASK, code=TASK + "    return a + b\n",
                      tests="assert add(2, 3) == 5\n", language="python")
    bad = await call(client, "capture_feedback", task=TASK, code=TASK + "    return a - b\n",
                     tests="assert add(2, 3) == 5\n", language="python")

    first = await call(client, "judge_output", episode_id=good["episode_id"], judge=judge)
    pid = reward_model_judge._scorers[job["job_id"]].process.pid
    second = await call(client, "judge_output", episode_id=bad["episode_id"], judge=judge)
    assert reward_model_judge._scorers[job["job_id"]].process.pid == pid, "the loaded model is kept for the next call"

    # The same scores as loading the adapter here and scoring prompt + response the way the trainer did.
    from roopik_rl_mcp.ml.reward_scoring import load_reward_model, score

    model, tokenizer = load_reward_model(job["output_dir"])
    for judged, body in ((first, "    return a + b\n"), (second, "    return a - b\n")):
        expected = score(model, tokenizer, TASK, body, max_length=64)
        assert judged["judge"] == "reward_model" and judged["model"] == job["job_id"]
        assert judged["reward_model_score"] == pytest.approx(expected, abs=1e-4)
        assert judged["reward"] == pytest.approx(1 / (1 + math.exp(-expected)), abs=1e-5)
        assert judged["reward_breakdown"] == {"reward_model": judged["reward"]}
        assert "offline rubric" in judged["rationale"]
    assert first["reward_model_score"] != second["reward_model_score"], "different answers, different scores"
    stored = await client.read_resource(f"episodes://{good['episode_id']}")
    assert job["job_id"] in stored.contents[0].text, "the judgment is stored with the episode"
    stats = {j["judge"]: j for j in (await call(client, "judge_stats"))["judges"]}
    assert stats["reward_model"]["calls"] == 2


async def test_reward_model_judge_refuses_what_cannot_judge(client):
    episode = await call(client, "capture_feedback", task=TASK, code=TASK + "    return a + b\n",
                         tests="assert add(2, 3) == 5\n", language="python")
    missing = await call_error(client, "judge_output", episode_id=episode["episode_id"], judge="reward_model:nope")
    assert "judge: no job with id 'nope'" in missing
    assert "judge" in await call_error(client, "judge_output", episode_id=episode["episode_id"], judge="reward_model:")
    assert "judge" in await call_error(client, "judge_output", episode_id=episode["episode_id"], judge="gpt")
    weighted = await call_error(client, "judge_output", episode_id=episode["episode_id"], judge="reward_model:x",
                                weights={"compiled": 1, "error_rate": 1, "functionality": 1, "quality": 1,
                                         "prompt_match": 1})
    assert "weights: a reward_model judge gives the reward itself" in weighted
    await call(client, "log_preference", pairs=[{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS])
    queued = await call(client, "start_training", kind="reward_model", reward_model={"max_steps": 1, "max_length": 32})
    early = await call_error(client, "judge_output", episode_id=episode["episode_id"],
                             judge=f"reward_model:{queued['job_id']}")
    assert "only a succeeded one can judge" in early
    await call(client, "cancel_job", job_id=queued["job_id"])
