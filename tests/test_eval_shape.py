"""The evaluation's shape: the server never imports the ML stack; batched left-padded generation matches
one-by-one; base + adapters share one load; the user's episodes are a benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from conftest import REPO_ROOT, call, call_error

HEAVY = ("torch", "transformers", "peft", "trl", "numpy", "gguf", "roopik_rl_mcp.ml",
         "roopik_rl_mcp.evaluation.generators.transformers_backend")


def test_server_start_imports_no_ml_stack():
    script = ("import sys, roopik_rl_mcp.server\n"
              f"print([m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in {HEAVY!r})])")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Path:
    from roopik_rl_mcp.ml.tiny import build_tiny_model

    return build_tiny_model(tiny_model_dir)


def make_adapter(base: Path, out: Path, seed: int) -> Path:
    """A real PEFT LoRA adapter with random (non-zero) weights, so it changes what the model writes."""
    import torch
    from peft import LoraConfig, get_peft_model

    from roopik_rl_mcp.ml.loading import load_model_and_tokenizer

    torch.manual_seed(seed)
    model, tokenizer = load_model_and_tokenizer(str(base))
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    peft.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_batched_left_padded_generation_matches_one_by_one(tiny):
    from roopik_rl_mcp.evaluation.generators import GenerationSettings
    from roopik_rl_mcp.evaluation.generators.transformers_backend import TransformersGenerator, load_group
    from roopik_rl_mcp.evaluation.tasks import load_tasks

    prompts = [t.prompt for t in load_tasks(limit=4)]  # different lengths: the batch needs padding
    assert len({len(p) for p in prompts}) == 4
    loaded = load_group(str(tiny), {}, None, None)
    one = TransformersGenerator("m", loaded, None, GenerationSettings(max_new_tokens=12, batch_size=1,
                                                                      prompt_format="completion"))
    four = TransformersGenerator("m", loaded, None, GenerationSettings(max_new_tokens=12, batch_size=4,
                                                                       prompt_format="completion"))
    singly = one.generate(prompts, 1)
    batched = four.generate(prompts, 2)
    assert [samples[0] for samples in batched] == [samples[0] for samples in singly]
    assert all(len(samples) == 2 and samples[0] == samples[1] for samples in batched), "greedy: repeated"
    assert all(0 < tokens <= 12 for samples in batched for _, tokens in samples)


def test_adapters_share_one_loaded_base_and_score_as_if_loaded_alone(tiny, tmp_path):
    a = make_adapter(tiny, tmp_path / "adapter-a", seed=1)
    b = make_adapter(tiny, tmp_path / "adapter-b", seed=2)
    common = {"tiny_model_path": str(tiny), "limit": 3, "n_samples": 1, "k": [1], "temperature": 0,
              "max_new_tokens": 12, "prompt_format": "completion"}

    def run(models: list[dict], name: str) -> tuple[dict, list[dict]]:
        out = tmp_path / name
        config = {**common, "models": models, "result_path": str(out / "result.json"),
                  "progress_path": str(out / "progress.jsonl")}
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
        done = subprocess.run([sys.executable, "-m", "roopik_rl_mcp.evaluation.runner", "--config",
                               str(tmp_path / f"{name}.json")], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-4000:]
        events = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
        return json.loads((out / "result.json").read_text()), events

    together, events = run([{"label": "base", "model": str(tiny)}, {"label": "a", "model": str(a)},
                            {"label": "b", "model": str(b)}], "together")
    loads = [e["text"] for e in events if e["event"] == "message" and e["text"].startswith("loading ")]
    assert len(loads) == 1 and "with 2 adapter(s) for base, a, b" in loads[0], loads
    models = {m["label"]: m for m in together["models"]}
    assert [m["label"] for m in together["models"]] == ["base", "a", "b"]
    assert all(m["shared_load"] for m in models.values())
    assert models["a"]["adapter"] == str(a) and models["base"]["adapter"] is None
    firsts = {label: [t["first_completion"] for t in m["per_task"]] for label, m in models.items()}
    assert firsts["a"] != firsts["base"] and firsts["b"] != firsts["a"], "each adapter was really active"
    for label, folder in (("a", a), ("b", b)):
        alone, _ = run([{"label": label, "model": str(folder)}], f"alone-{label}")
        assert [t["first_completion"] for t in alone["models"][0]["per_task"]] == firsts[label]
        assert not alone["models"][0]["shared_load"]
    base_alone, _ = run([{"label": "base", "model": str(tiny)}], "alone-base")
    assert [t["first_completion"] for t in base_alone["models"][0]["per_task"]] == firsts["base"]
    assert len(together["comparisons"]) == 2 and together["comparisons"][0]["a"] == "base"


TASK = "Return the sum of a and b."
TESTS = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"


@pytest.mark.anyio
async def test_episodes_are_a_benchmark(client, store, tiny):
    assert "capture Python episodes" in await call_error(client, "evaluate_checkpoint", benchmark="episodes")
    await call(client, "capture_feedback", task=TASK, tests=TESTS,
               code="import operator\n\n\ndef add(a: int, b: int) -> int:\n    return operator.add(a, b)\n")
    await call(client, "capture_feedback", task=TASK, tests=TESTS, code="def add(a, b):\n    return a - b\n")
    await call(client, "capture_feedback", task="Return a minus b.", code="def sub(a, b):\n    return a - b\n",
               tests="def test_sub():\n    assert sub(3, 1) == 2\n")  # pytest-style: not a check(candidate) task
    assert store.count("jobs") == 0
    started = await call(client, "evaluate_checkpoint", benchmark="episodes", max_new_tokens=8)
    assert started["n_tasks"] == 1
    deadline = time.monotonic() + 300
    while (state := await call(client, "job_status", job_id=started["job_id"]))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        await anyio.sleep(0.5)
    assert state["status"] == "succeeded", state.get("log_tail")
    assert state["result"]["benchmark"] == "episodes"
    [verdict] = state["result"]["models"][0]["per_task"]
    assert verdict["task_id"].startswith("episode/") and verdict["n"] == 1
    tasks = [json.loads(line) for line in (Path(state["output_dir"]).parent / "episode_tasks.jsonl").read_text()
             .splitlines()]
    prompt = tasks[0]["prompt"]
    assert prompt.startswith("import operator\n") and 'def add(a: int, b: int) -> int:\n    """Return the sum' in prompt
    from roopik_rl_mcp.sandbox import run_python

    assert run_python(prompt + tasks[0]["canonical_solution"], TESTS, "add").passed, "the prompt is a real task"
