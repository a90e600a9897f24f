"""device="auto", QLoRA and the launcher: resolution with CUDA faked (no GPU here), refusals before a job, argv."""

from __future__ import annotations

import sys

import pytest
import torch
from pydantic import ValidationError

import trainers.params as params_module
from conftest import REPO_ROOT, call_error
from roopik_rl_mcp.ml.finetune import checkpointing_field, quantization_config, resolve_device
from trainers.dpo import DPOParams
from trainers.grpo import GRPOParams
from trainers.params import ACCELERATE_CONFIGS, TrainerParams, launch_argv
from trainers.reward_model import RewardModelParams
from trainers.sft import SFTParams

ALL_PARAMS = (DPOParams, SFTParams, GRPOParams, RewardModelParams)


def fake_cuda(monkeypatch: pytest.MonkeyPatch, available: bool = True, bf16: bool = True) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


def test_auto_on_cuda_is_bf16_with_gradient_checkpointing(monkeypatch):
    fake_cuda(monkeypatch)
    hw = resolve_device("auto")
    assert (hw.device, hw.precision, hw.gradient_checkpointing, hw.load_in_4bit) == ("cuda", "bf16", True, False)
    assert hw.dtype == torch.bfloat16 and hw.torch_device == "cuda:0"
    assert hw.training_args() == {"use_cpu": False, "bf16": True, "fp16": False, checkpointing_field(): True}
    assert hw.record() == {"device_requested": "auto", "device": "cuda", "precision": "bf16", "load_in_4bit": False,
                           "gradient_checkpointing": True, "num_processes": 1}
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_device().torch_device == "cuda:1" and resolve_device().num_processes == 2


def test_cuda_without_bf16_trains_in_fp16(monkeypatch):
    fake_cuda(monkeypatch, bf16=False)
    hw = resolve_device("cuda", gradient_checkpointing=False)
    assert (hw.precision, hw.dtype, hw.gradient_checkpointing) == ("fp16", torch.float16, False)
    assert hw.training_args()["fp16"] and not hw.training_args()["bf16"]


def test_cpu_is_fp32_without_checkpointing(monkeypatch):
    fake_cuda(monkeypatch, available=False)
    hw = resolve_device("auto")
    assert (hw.device, hw.precision, hw.gradient_checkpointing, hw.torch_device) == ("cpu", "fp32", False, "cpu")
    assert hw.training_args() == {"use_cpu": True, "bf16": False, "fp16": False, checkpointing_field(): False}
    assert resolve_device("auto", gradient_checkpointing=True).gradient_checkpointing
    fake_cuda(monkeypatch, available=True)
    assert resolve_device("cpu").record()["device"] == "cpu", "device='cpu' forces the CPU on a GPU machine"


def test_qlora_resolves_on_cuda_and_is_refused_on_the_cpu(monkeypatch):
    fake_cuda(monkeypatch)
    hw = resolve_device("auto", load_in_4bit=True)
    assert hw.load_in_4bit and hw.device == "cuda"
    bnb = quantization_config(hw)
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config(resolve_device("auto")) is None
    with pytest.raises(ValueError, match="load_in_4bit"):
        resolve_device("cpu", load_in_4bit=True)
    fake_cuda(monkeypatch, available=False)
    with pytest.raises(ValueError, match="load_in_4bit"):
        resolve_device("auto", load_in_4bit=True)
    with pytest.raises(ValueError, match="device='cuda'"):
        resolve_device("cuda")


def test_every_trainer_shares_the_device_fields_and_their_defaults():
    for cls in ALL_PARAMS:
        assert issubclass(cls, TrainerParams)
        defaults = cls().model_dump()
        assert (defaults["device"], defaults["load_in_4bit"], defaults["gradient_checkpointing"]) == ("auto", False, None)
        assert (defaults["lora_r"], defaults["lora_alpha"], defaults["num_processes"]) == (8, 16, 1)


def test_the_params_refuse_qlora_where_it_cannot_run(monkeypatch):
    def refused(**fields) -> str:
        with pytest.raises(ValidationError) as info:
            SFTParams(**fields)
        return str(info.value)

    monkeypatch.setattr(params_module, "cuda_visible", lambda: True)
    message = refused(device="cpu", load_in_4bit=True)
    assert "load_in_4bit" in message and "CUDA" in message
    monkeypatch.setattr(params_module, "installed", lambda name: name != "bitsandbytes")
    assert "bitsandbytes" in refused(load_in_4bit=True)
    monkeypatch.setattr(params_module, "installed", lambda name: True)
    assert SFTParams(load_in_4bit=True).load_in_4bit
    assert "accelerate_config" in refused(load_in_4bit=True, accelerate_config="fsdp")
    monkeypatch.setattr(params_module, "cuda_visible", lambda: False)
    assert "this machine shows none" in refused(load_in_4bit=True)
    assert "device" in refused(device="cuda")
    assert "accelerate_config" in refused(device="cpu", accelerate_config="deepspeed_zero2")


@pytest.mark.anyio
async def test_start_training_refuses_qlora_before_a_job(client, store, monkeypatch):
    monkeypatch.setattr(params_module, "cuda_visible", lambda: False)
    message = await call_error(client, "start_training", kind="sft", sft={"load_in_4bit": True})
    assert "load_in_4bit" in message and "CUDA" in message
    message = await call_error(client, "start_dpo", device="cpu", load_in_4bit=True)
    assert "load_in_4bit" in message
    assert store.count("jobs") == 0


def test_launch_argv_plain_or_accelerate():
    script, config = REPO_ROOT / "trainers" / "dpo.py", "/job/config.json"
    assert launch_argv(script, config, {}) == [sys.executable, str(script), "--config", config]
    argv = launch_argv(script, config, {"num_processes": 2}, python="py")
    port = argv[argv.index("--main_process_port") + 1]
    assert argv == ["py", "-m", "accelerate.commands.launch", "--config_file",
                    str(REPO_ROOT / "trainers" / "accelerate" / "ddp.yaml"), "--num_processes", "2",
                    "--main_process_port", port, str(script), "--config", config]
    assert 0 < int(port) < 65536
    argv = launch_argv(script, config, {"num_processes": 8, "accelerate_config": "deepspeed_zero3"})
    assert argv[argv.index("--config_file") + 1].endswith("deepspeed_zero3.yaml") and "--cpu" not in argv


def test_the_shipped_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    kinds = {name: load_config_from_file(str(REPO_ROOT / "trainers" / "accelerate" / f"{name}.yaml"))
             for name in ACCELERATE_CONFIGS}
    assert kinds["ddp"].distributed_type == DistributedType.MULTI_GPU
    assert kinds["deepspeed_zero2"].deepspeed_config["zero_stage"] == 2
    assert kinds["deepspeed_zero3"].deepspeed_config["zero_stage"] == 3
    assert kinds["fsdp"].distributed_type == DistributedType.FSDP and kinds["fsdp"].fsdp_config["fsdp_version"] == 2
    assert all(config.mixed_precision == "no" for config in kinds.values()), "the trainer picks the precision"
