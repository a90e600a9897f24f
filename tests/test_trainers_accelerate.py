"""The trainers under `accelerate launch`: DPO on the tiny model in two CPU processes (trainers/accelerate/ddp.yaml).

Every rank runs trainers/dpo.py unchanged; only rank 0 writes the progress file, the adapter and the summary.
The command line is the one start_dpo/start_training build for num_processes=2 (trainers.params.launch_argv).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from conftest import REPO_ROOT, call
from trainers.params import launch_argv

PAIRS = [("def add(a, b):\n", "    return a + b\n", "    return a - b\n"),
         ("def square(x):\n", "    return x * x\n", "    return x + x\n"),
         ("def neg(x):\n", "    return -x\n", "    return x\n"),
         ("def inc(x):\n", "    return x + 1\n", "    return x - 1\n")]


def test_dpo_in_two_processes_writes_one_adapter_and_one_end_event(tiny_model_dir, tmp_path):
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n"
                                                  for p, c, r in PAIRS))
    params = {"num_processes": 2, "max_steps": 2, "batch_size": 1, "max_length": 64}
    config = {"dataset_path": str(tmp_path / "pairs.jsonl"), "output_dir": str(tmp_path / "out"),
              "progress_path": str(tmp_path / "progress.jsonl"), "base_model": None,
              "tiny_model_path": str(tiny_model_dir), **params}
    (tmp_path / "config.json").write_text(json.dumps(config))
    argv = launch_argv(REPO_ROOT / "trainers" / "dpo.py", tmp_path / "config.json", params)
    assert argv[1:3] == ["-m", "accelerate.commands.launch"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    events = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("start") == 1
    ends = [e for e in events if e["event"] == "end"]
    assert len(ends) == 1 and ends[0] == events[-1] and ends[0]["status"] == "succeeded", ends
    assert [e["step"] for e in events if e["event"] == "log" and "loss" in e["metrics"]] == [1, 2]
    assert done.stderr.count("[progress] saving adapter") == 1, "rank 1 neither writes nor prints progress"

    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("adapter_model*")) == ["adapter_model.safetensors"]
    assert not list(out.glob("checkpoint-*"))
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert Path(adapter_config["base_model_name_or_path"]) == tiny_model_dir.resolve()
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["hyperparameters"]["num_processes"] == 2, "two ranks, one world"
    assert summary["steps"] == 2 and summary["hyperparameters"]["device"] == "cpu"
    assert summary["final_metrics"]["epoch"] == 1.0, "2 steps x 2 ranks x 1 pair = the 4 pairs once"


@pytest.mark.anyio
async def test_start_dpo_with_two_processes_runs_under_accelerate(client, store):
    await call(client, "log_preference", pairs=[{"prompt": p, "chosen": c, "rejected": r, "chosen_reward": 0.9,
                                                 "rejected_reward": 0.1} for p, c, r in PAIRS])
    started = await call(client, "start_dpo", num_processes=2, max_steps=2, batch_size=1, max_length=64)
    job = store.get("jobs", started["job_id"])
    assert job["config"]["argv"][1:3] == ["-m", "accelerate.commands.launch"]
    deadline = time.monotonic() + 300
    while (state := await call(client, "job_status", job_id=started["job_id"]))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        await anyio.sleep(0.5)
    assert state["status"] == "succeeded", state.get("log_tail")
    assert state["result"]["hyperparameters"]["num_processes"] == 2 and state["result"]["steps"] == 2
    assert (Path(state["output_dir"]) / "adapter_model.safetensors").is_file()
