"""End-to-end check of trainers/dpo.py as the server runs it: a real subprocess on the tiny model.

Everything is local (tiny model built into tmp, no hub access). Takes ~30-40 s on 2 CPU cores, most
of it building the tiny model once and importing torch/transformers/trl in each process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DPO_SCRIPT = REPO_ROOT / "trainers" / "dpo.py"

PAIRS = [
    ("def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n", "    return a + b\n", "    return a - b\n"),
    ("def is_even(n):\n    \"\"\"True if n is even.\"\"\"\n", "    return n % 2 == 0\n", "    return n % 2 == 1\n"),
    ("def square(x):\n", "    return x * x\n", "    return x + x\n"),
    ("def first(xs):\n    \"\"\"First item or None.\"\"\"\n", "    return xs[0] if xs else None\n", "    return xs[0]\n"),
    ("def rev(s):\n", "    return s[::-1]\n", "    return s\n"),
    ("def mx(xs):\n", "    return max(xs)\n", "    return min(xs)\n"),
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _run_dpo(tmp: Path, **overrides: Any) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    dataset = tmp / "pairs.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in PAIRS))
    config = {
        "dataset_path": str(dataset),
        "output_dir": str(tmp / "adapter"),
        "progress_path": str(tmp / "progress.jsonl"),
        "base_model": None,
        "tiny_model_path": str(tmp / "tiny-llama"),
        "max_steps": 4,
        "batch_size": 2,
        "max_length": 128,
        "seed": 42,
        **overrides,
    }
    (tmp / "config.json").write_text(json.dumps(config))
    proc = subprocess.run(
        [sys.executable, str(DPO_SCRIPT), "--config", str(tmp / "config.json")],
        cwd=tmp,  # not the repo root: the script must find `trainers` by itself
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, config


def _events(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    return _run_dpo(tmp_path_factory.mktemp("dpo"))


def test_dpo_subprocess_trains_and_reports(trained: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    proc, config = trained
    assert proc.returncode == 0, proc.stderr[-4000:]

    events = _events(config["progress_path"])
    assert events[0]["event"] == "start" and events[0]["max_steps"] == 4 and isinstance(events[0]["pid"], int)
    logs = [e for e in events if e["event"] == "log" and "loss" in e["metrics"]]
    assert logs, events
    assert all(e["max_steps"] == 4 and isinstance(e["step"], int) for e in logs)
    assert all(isinstance(v, float) for e in logs for v in e["metrics"].values())
    assert "rewards/accuracies" in logs[-1]["metrics"]
    assert any(e["event"] == "message" and "building tiny model" in e["text"] for e in events)
    end = events[-1]
    assert end["event"] == "end" and end["status"] == "succeeded" and end["error"] is None, end
    assert end["output_dir"] == config["output_dir"]
    metrics = end["metrics"]
    for key in ("pref_accuracy_before", "pref_accuracy_after", "logp_margin_before", "logp_margin_after"):
        assert isinstance(metrics[key], float), key
    assert metrics["steps"] == 4 and metrics["n_pairs"] == len(PAIRS)

    out = Path(config["output_dir"])
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file() or (out / "adapter_model.bin").is_file()
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    tiny = Path(config["tiny_model_path"])
    assert Path(adapter_config["base_model_name_or_path"]) == tiny.resolve()
    assert (tiny / "README.md").is_file() and (tiny / "tokenizer.json").is_file()
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["n_pairs"] == len(PAIRS) and summary["steps"] == 4 and summary["base_model_is_tiny"]
    assert summary["data_format"] == "completion", "the tiny tokenizer has no chat template"
    hyper = summary["hyperparameters"]
    assert (hyper["device_requested"], hyper["device"], hyper["precision"]) == ("auto", "cpu", "fp32")
    assert hyper["gradient_checkpointing"] is False and hyper["load_in_4bit"] is False and hyper["num_processes"] == 1
    assert summary["metrics"]["pref_accuracy_after"] == metrics["pref_accuracy_after"]


def test_adapter_reloads_by_path(trained: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    proc, config = trained
    assert proc.returncode == 0, proc.stderr[-4000:]
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import torch
    from peft import PeftModel

    from trainers.common import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(config["output_dir"])  # adapter dir alone, no tiny_path
    assert isinstance(model, PeftModel)
    ids = tokenizer("def add(a, b):\n    return a + b\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


CHAT_TEMPLATE = ("{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>{% endfor %}"
                 "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}")


def test_a_chat_template_sends_the_pairs_as_conversations(trained, tmp_path: Path) -> None:
    import shutil

    from transformers import AutoTokenizer

    from roopik_rl_mcp.ml.finetune import prompt_and_full_ids

    proc, config = trained
    assert proc.returncode == 0, proc.stderr[-4000:]
    chat_model = tmp_path / "chat-tiny"
    shutil.copytree(config["tiny_model_path"], chat_model)
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(chat_model)
    prompt_ids, full_ids = prompt_and_full_ids(tokenizer, "def f():\n", "    return 1\n", "conversational")
    prompt_text, full_text = tokenizer.decode(prompt_ids), tokenizer.decode(full_ids)  # tokens may merge at the seam
    assert prompt_text.endswith("assistant\n") and full_text.startswith(prompt_text) and "<|bos|>user" in prompt_text

    proc, chat_config = _run_dpo(tmp_path, base_model=str(chat_model), max_steps=2)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((Path(chat_config["output_dir"]) / "training_summary.json").read_text())
    assert summary["data_format"] == "conversational" and summary["steps"] == 2
    assert any("data format: conversational" in e.get("text", "") for e in _events(chat_config["progress_path"]))
    saved = AutoTokenizer.from_pretrained(chat_config["output_dir"])
    assert saved.chat_template == CHAT_TEMPLATE, "the adapter keeps the template it was trained with"


def test_missing_base_model_fails_with_end_event(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    proc, config = _run_dpo(tmp_path, base_model=str(missing))
    assert proc.returncode != 0, proc.stdout[-2000:]
    end = _events(config["progress_path"])[-1]
    assert end["event"] == "end" and end["status"] == "failed", end
    assert str(missing) in end["error"], (end, proc.stderr[-4000:])
    assert not (tmp_path / "tiny-llama").exists()  # a real base was asked for: no tiny build
