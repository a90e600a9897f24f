"""generation_backend="vllm": the in-process vLLM path (engine once per base, LoRA per request), checked
against a stand-in of vLLM's API (tests/stand_ins/vllm) since this machine has no GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO_ROOT, call, call_error
from roopik_rl_mcp.evaluation.prompting import STOP_SEQUENCES
from test_eval_models import wait_done
from test_eval_shape import make_adapter

STAND_INS = REPO_ROOT / "tests" / "stand_ins"


@pytest.mark.anyio
async def test_vllm_generates_base_and_adapter_on_one_engine(client, monkeypatch, tmp_path, tiny_model_dir):
    from roopik_rl_mcp.ml.tiny import build_tiny_model

    adapter = make_adapter(build_tiny_model(tiny_model_dir), tmp_path / "adapter", seed=1)
    log = tmp_path / "vllm.jsonl"
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", str(STAND_INS))  # the job process finds the stand-in as `vllm`
    monkeypatch.syspath_prepend(str(STAND_INS))       # and so does the server's "is vllm installed" check
    started = await call(client, "evaluate_checkpoint", models=["tiny", str(adapter)], limit=3,
                         generation_backend="vllm", prompt_format="completion")
    done = await wait_done(client, started["job_id"])
    assert done["status"] == "succeeded", done.get("log_tail")

    events = [json.loads(line) for line in log.read_text().splitlines()]
    engines = [e for e in events if e["event"] == "engine"]
    assert len(engines) == 1, "base and adapter share one engine"
    assert engines[0]["enable_lora"] is True and engines[0]["max_loras"] == 1 and engines[0]["max_lora_rank"] == 8
    assert Path(engines[0]["model"]) == tiny_model_dir and engines[0]["seed"] == 0
    calls = [e for e in events if e["event"] == "generate"]
    assert [c["lora"] for c in calls] == [None, {"lora_name": "adapter0", "lora_int_id": 1, "lora_path": str(adapter)}]
    params = calls[0]["params"]
    assert params["temperature"] == 0.0 and params["n"] == 1 and params["stop"] == list(STOP_SEQUENCES)
    assert params["max_tokens"] == 256

    result = done["result"]
    assert result["generation_backend"] == "vllm"
    base, tuned = result["models"]
    assert base["backend"] == tuned["backend"] == "vllm"
    assert base["pass_at_k"]["pass@1"] == 0.0 and tuned["pass_at_k"]["pass@1"] == 1.0, "the stop cut `def extra`"
    assert len(result["comparisons"][0]["tasks_gained"]) == 3


@pytest.mark.anyio
async def test_vllm_asked_for_where_it_is_not_installed_is_refused(client):
    message = await call_error(client, "evaluate_checkpoint", generation_backend="vllm", limit=1)
    assert "generation_backend: vllm is not installed" in message
    assert (await call(client, "list_jobs"))["jobs"] == [], "nothing launched"


def test_auto_picks_vllm_only_with_a_gpu(monkeypatch):
    import torch

    from roopik_rl_mcp.evaluation.generators import vllm_backend

    monkeypatch.syspath_prepend(str(STAND_INS))
    assert vllm_backend.vllm_installed()
    assert not vllm_backend.use_vllm("auto"), "no CUDA here"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert vllm_backend.use_vllm("auto") and vllm_backend.use_vllm("vllm") and not vllm_backend.use_vllm("transformers")
