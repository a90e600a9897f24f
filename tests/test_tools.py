"""capture_feedback, judge_output, log_preference, export_preferences through a real MCP client session."""

from __future__ import annotations

import json

import pytest

from conftest import call, call_error

pytestmark = pytest.mark.anyio

TASK = "Write add(a, b) that returns the sum of two numbers."
GOOD = 'def add(a: int, b: int) -> int:\n    """Sum of a and b."""\n    return a + b\n'
BAD = "def add(a, b):\n    return a - b\n"
TESTS = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n    assert candidate(-1, 1) == 0\n"


async def test_every_tool_is_listed_with_schemas_and_hints(client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"capture_feedback", "judge_output", "log_preference", "export_preferences", "start_dpo",
            "evaluate_checkpoint", "job_status", "cancel_job", "list_jobs"} <= tools.keys()
    for tool in tools.values():
        assert tool.output_schema and tool.description and tool.annotations is not None
    assert tools["job_status"].annotations.read_only_hint is True
    assert tools["cancel_job"].annotations.destructive_hint is True
    assert tools["capture_feedback"].input_schema["required"] == ["task", "code"]


async def test_capture_then_judge_gives_the_plan_reward(client, store):
    good = await call(client, "capture_feedback", task=TASK, code=GOOD, tests=TESTS, entry_point="add")
    assert good["status"] == "passed" and good["passed"] and good["tests_total"] == 3
    bad = await call(client, "capture_feedback", task=TASK, code=BAD, tests=TESTS)  # entry point inferred
    assert (bad["status"], bad["tests_passed"], bad["tests_total"]) == ("failed", 1, 3)

    judged = await call(client, "judge_output", episode_id=bad["episode_id"])
    scores = judged["scores"]
    expected = (0.3 * 1 + 0.2 * (1 / 3) + 0.2 * scores["functionality"] / 10 + 0.15 * scores["quality"] / 10
                + 0.15 * scores["prompt_match"] / 10)
    assert judged["reward"] == pytest.approx(expected, abs=1e-5)
    assert judged["judge"] == "offline" and judged["rationale"]
    good_judged = await call(client, "judge_output", episode_id=good["episode_id"])
    assert good_judged["reward"] > judged["reward"]
    assert store.count("judgments") == 2


async def test_judge_weights_are_normalised_and_bad_weights_named(client):
    episode = await call(client, "capture_feedback", task=TASK, code="def add(a, b:\n", tests=TESTS, entry_point="add")
    assert episode["status"] == "build_error"
    only_compiled = await call(client, "judge_output", episode_id=episode["episode_id"],
                               weights={"compiled": 1, "error_rate": 0, "functionality": 0, "quality": 0, "prompt_match": 0})
    assert only_compiled["reward"] == 0.0
    message = await call_error(client, "judge_output", episode_id=episode["episode_id"], weights={"compiled": -1})
    assert "weights" in message and "compiled" in message


async def test_log_preference_explicit_episode_and_auto_pairs(client, store, tmp_path):
    first = await call(client, "log_preference", prompt="p", chosen="good", rejected="bad", chosen_reward=0.9,
                       rejected_reward=0.2)
    assert len(first["created"]) == 1
    duplicate = await call(client, "log_preference", prompt="p", chosen="good", rejected="bad")
    assert duplicate["created"] == [] and duplicate["skipped"][0]["reason"].startswith("duplicate")
    contradiction = await call(client, "log_preference", prompt="p", chosen="bad", rejected="good")
    assert contradiction["created"] == [] and "contradicts" in contradiction["skipped"][0]["reason"]

    ids = []
    for code in (GOOD, BAD, "def add(a, b):\n    return a * b\n"):
        episode = await call(client, "capture_feedback", task=TASK, code=code, tests=TESTS, entry_point="add")
        await call(client, "judge_output", episode_id=episode["episode_id"])
        ids.append(episode["episode_id"])
    from_episodes = await call(client, "log_preference", chosen_episode_id=ids[0], rejected_episode_id=ids[1])
    assert len(from_episodes["created"]) == 1
    auto = await call(client, "log_preference", auto=True, min_margin=0.05)
    assert auto["skipped"], "the pair logged from episodes must be reported as a duplicate"
    assert any(s["reason"].startswith("duplicate") for s in auto["skipped"])
    assert auto["total_pairs"] == store.count("preferences") >= 3

    export = await call(client, "export_preferences", path="pairs.jsonl", min_margin=0.0)
    rows = [json.loads(line) for line in open(export["path"])]
    assert len(rows) == export["n_pairs"] == store.count("preferences")
    assert all(set(row) == {"prompt", "chosen", "rejected"} for row in rows)
    manifest = json.loads(open(export["manifest_path"]).read())
    assert manifest["n_pairs"] == len(rows) and manifest["filters"]["min_margin"] == 0.0 and manifest["filters"]["contamination"] == "flag"
    strict = await call(client, "export_preferences", path="runs/strict.jsonl", min_margin=0.99)
    assert strict["path"].endswith("/exports/runs/strict.jsonl")
    assert strict["skipped_below_margin"] >= 1


REACT = 'export default function Hello() {\n  return <button className="px-4">Hi</button>;\n}\n'


async def test_a_language_no_executor_runs_is_a_clear_error_and_stores_nothing(client, store):
    message = await call_error(client, "capture_feedback", task="a button", code=REACT, backend="sandbox")
    assert "'jsx' (inferred from the code" in message and "nothing was stored" in message
    assert "browser (UI code" in message, "the error says what can run it"
    assert store.count("episodes") == 0


async def test_the_language_is_inferred_and_recorded(client, store):
    guessed = await call(client, "capture_feedback", task=TASK, code=GOOD, tests=TESTS)
    assert (guessed["language"], guessed["language_inferred"]) == ("python", True) and guessed["passed"]
    given = await call(client, "capture_feedback", task=TASK, code=GOOD, tests=TESTS, language="python")
    assert (given["language"], given["language_inferred"]) == ("python", False)
    view = json.loads((await client.read_resource(f"episodes://{guessed['episode_id']}")).contents[0].text)
    assert view["language"] == "python" and view["language_inferred"] is True


async def test_every_parameter_is_described_without_project_jargon(client):
    for tool in (await client.list_tools()).tools:
        assert "the plan" not in tool.description.lower(), tool.name
        for name, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"
            assert "the plan" not in schema["description"].lower(), f"{tool.name}.{name}"


BAD_INPUTS = [
    ("capture_feedback", {"task": "t"}, "code"),
    ("capture_feedback", {"task": "t", "code": 5}, "code"),
    ("capture_feedback", {"task": "t", "code": "x" * 1_000_001}, "code is larger than the limit of 1 MB"),
    ("capture_feedback", {"task": "t", "code": "pass", "timeout_s": -1}, "timeout_s"),
    ("capture_feedback", {"task": "t", "code": "def a(): pass\ndef b(): pass\n", "tests": "def check(c):\n    assert c()\n"}, "entry_point"),
    ("judge_output", {"episode_id": "ep_missing"}, "episode_id: no episode"),
    ("judge_output", {}, "episode_id"),
    ("judge_output", {"episode_id": "x", "judge": "llm"}, "judge"),
    ("log_preference", {"prompt": "p", "chosen": "a"}, "rejected is required"),
    ("log_preference", {"prompt": "p", "chosen": "a", "rejected": "a"}, "identical"),
    ("log_preference", {"chosen_episode_id": "ep_x", "rejected_episode_id": "ep_y"}, "chosen_episode_id: no episode"),
    ("log_preference", {}, "exactly one of"),
    ("log_preference", {"prompt": "p", "chosen": "x" * 1_000_001, "rejected": "b"}, "chosen is larger than the limit of 1 MB"),
    ("export_preferences", {"path": "/nonexistent-dir/x.jsonl"}, "outside the allowed places"),
    ("start_dpo", {"base_model": "/no/such/model"}, "base_model: model path"),
    ("start_dpo", {"lora_r": "eight"}, "lora_r"),
    ("evaluate_checkpoint", {"model": "/no/such/adapter"}, "model: model path"),
    ("evaluate_checkpoint", {"k": [1, 5], "n_samples": 2}, "k values [5]"),
    ("evaluate_checkpoint", {"benchmark": "mbpp-nope"}, "benchmark"),
    ("job_status", {"job_id": "dpo_missing"}, "job_id: no job"),
    ("cancel_job", {"job_id": "dpo_missing"}, "job_id: no job"),
]


@pytest.mark.parametrize("tool,arguments,expected", BAD_INPUTS, ids=[f"{t}-{e[:20]}" for t, _, e in BAD_INPUTS])
async def test_bad_input_is_a_clear_error_and_loses_nothing(client, store, tool, arguments, expected):
    await call(client, "capture_feedback", task=TASK, code=GOOD, tests=TESTS, entry_point="add")
    await call(client, "log_preference", prompt="p", chosen="a", rejected="b")
    before = {t: store.count(t) for t in ("episodes", "judgments", "preferences", "jobs")}
    message = await call_error(client, tool, **arguments)
    assert expected in message
    assert {t: store.count(t) for t in before} == before


async def test_resources_read_stored_data(client):
    episode = await call(client, "capture_feedback", task=TASK, code=GOOD, tests=TESTS, entry_point="add")
    await call(client, "judge_output", episode_id=episode["episode_id"])
    read = await client.read_resource(f"episodes://{episode['episode_id']}")
    data = json.loads(read.contents[0].text)
    assert data["code"] == GOOD and data["status"] == "passed" and len(data["judgments"]) == 1
    assert data["passed"] is True and data["tests"] == TESTS, "the same names and types as the tool's"
    assert [t["status"] for t in data["test_outcomes"]] == ["passed", "passed", "passed"]
    summary = json.loads((await client.read_resource("stats://summary")).contents[0].text)
    assert summary["episodes"] == 1 and summary["judgments"] == 1


async def test_start_dpo_without_pairs_says_so(client, store):
    message = await call_error(client, "start_dpo")
    assert "no preference pairs" in message and store.count("jobs") == 0


async def test_a_version_1_database_is_upgraded_in_place(tmp_path):
    import sqlite_utils

    from roopik_rl_mcp import store as store_module

    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    store_module._create_v1(old)
    old["schema_version"].insert({"version": 1, "applied_at": 0.0})
    old["episodes"].insert({"id": "ep_old", "task": "t", "code": "x = 1", "status": "passed", "passed": 1})
    old.conn.close()
    upgraded = store_module.Store(path)
    assert upgraded.schema_version() == store_module.SCHEMA_VERSION == 2
    episode = upgraded.get("episodes", "ep_old")
    assert episode["language_source"] == "given" and episode["backend"] == "sandbox"
    assert "artifacts" in upgraded.db.table_names()
