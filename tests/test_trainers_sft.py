"""start_training(kind="sft"): LoRA SFT on the passing episodes, a real subprocess on the tiny model."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from conftest import REPO_ROOT, call, call_error

pytestmark = pytest.mark.anyio

TASK = "Write add(a, b) that returns the sum of two numbers."
TESTS = "def check(candidate):\n    assert candidate(1, 2) == 3\n"


async def test_sft_trains_on_passing_episodes_and_the_adapter_reloads(client, store):
    assert "no passing episodes" in await call_error(client, "start_training", kind="sft")
    for code in ("def add(a, b):\n    return a + b\n", "def add(a, b):\n    return b + a\n",
                 "def add(a, b):\n    return a - b\n"):
        await call(client, "capture_feedback", task=TASK, code=code, tests=TESTS)
    message = await call_error(client, "start_training", kind="dpo", sft={"max_steps": 2})
    assert "kind='dpo' takes `dpo` parameters" in message
    assert "learning_rate" in await call_error(client, "start_training", kind="sft", sft={"learning_rate": -1})
    assert store.count("jobs") == 0

    started = await call(client, "start_training", kind="sft", sft={"max_steps": 8, "max_length": 64, "batch_size": 2})
    assert started["kind"] == "sft" and started["n_examples"] == 2, "only the two passing episodes"
    deadline = time.monotonic() + 300
    while (state := await call(client, "job_status", job_id=started["job_id"]))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        await anyio.sleep(0.5)
    assert state["status"] == "succeeded", state.get("log_tail")
    metrics = state["result"]["metrics"]
    assert metrics["completion_logprob_after"] > metrics["completion_logprob_before"], metrics
    assert state["result"]["hyperparameters"]["learning_rate"] == 1e-3
    adapter = Path(state["output_dir"])
    script = ("import sys; from trainers.common import load_model_and_tokenizer as load\n"
              "model, tok = load(sys.argv[1])\n"
              "ids = tok('def add(a, b):', return_tensors='pt')['input_ids']\n"
              "print(model.generate(input_ids=ids, max_new_tokens=4, do_sample=False).shape[1] > ids.shape[1])")
    done = subprocess.run([sys.executable, "-c", script, str(adapter)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("True"), done.stderr[-2000:]


def test_sft_with_a_chat_template_trains_on_conversations(tiny_model_dir, tmp_path):
    import json
    import os
    import shutil

    from test_trainers_dpo import CHAT_TEMPLATE
    from transformers import AutoTokenizer

    from roopik_rl_mcp.ml.tiny import build_tiny_model

    chat_model = tmp_path / "chat-tiny"
    shutil.copytree(build_tiny_model(tiny_model_dir), chat_model)
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(chat_model)
    (tmp_path / "examples.jsonl").write_text(json.dumps({"prompt": TASK, "completion": "def add(a, b):\n    return a + b\n"})
                                             + "\n")
    config = {"dataset_path": str(tmp_path / "examples.jsonl"), "output_dir": str(tmp_path / "out"),
              "base_model": str(chat_model), "max_steps": 2, "max_length": 64, "batch_size": 1}
    (tmp_path / "config.json").write_text(json.dumps(config))
    done = subprocess.run([sys.executable, str(REPO_ROOT / "trainers" / "sft.py"), "--config", str(tmp_path / "config.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    assert summary["data_format"] == "conversational" and summary["metrics"]["steps"] == 2
    assert summary["metrics"]["completion_logprob_after"] > summary["metrics"]["completion_logprob_before"]
