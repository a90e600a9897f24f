"""The fields every trainer's parameters share (LoRA size, device, QLoRA, launcher), set in this one place.

Each trainer's own model (DPOParams in trainers/dpo.py, SFTParams, GRPOParams, RewardModelParams) extends
`TrainerParams` with its hyperparameters. The server imports these models to build its tool schemas, so this
file needs pydantic only: a request that cannot run here (QLoRA without a CUDA GPU or bitsandbytes, a
DeepSpeed launcher without deepspeed) is refused before a job starts, naming the field. Device-dependent
defaults (precision, gradient checkpointing) are resolved in the job by
`roopik_rl_mcp.ml.finetune.resolve_device` and recorded in the job's hyperparameters.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import socket
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

ACCELERATE_CONFIGS = ("ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp")
"""Configs shipped in trainers/accelerate/<name>.yaml (see the README there)."""

ACCELERATE_DIR = Path(__file__).resolve().parent / "accelerate"


def cuda_visible() -> bool:
    """Whether this machine shows an NVIDIA GPU, without importing torch (the server stays light)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return (Path("/proc/driver/nvidia/version").exists() or bool(glob.glob("/dev/nvidia[0-9]*"))
            or Path("/dev/dxg").exists())  # /dev/dxg: a GPU under WSL2


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class TrainerParams(BaseModel):
    """LoRA size and where/how the job runs; the defaults here are the only ones."""

    model_config = ConfigDict(allow_inf_nan=False)

    learning_rate_defaults: ClassVar[tuple[float, float]] = (1e-3, 1e-4)
    """learning_rate when omitted: (tiny model, real model); each trainer's model sets its own."""

    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank: size of the low-rank update; 8-16 is usual, higher "
                        "learns more and saves a bigger adapter.")
    lora_alpha: int = Field(16, ge=1, le=1024, description="LoRA scaling (the update is scaled by lora_alpha / "
                            "lora_r); usually 2 x lora_r.")
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="auto: a CUDA GPU when there is one (bf16, or fp16 where the GPU lacks bf16), else the "
        "CPU in float32; cuda or cpu force one.")
    load_in_4bit: bool = Field(False, description="QLoRA: load the base in 4-bit NF4 (bitsandbytes) and train the "
                               "LoRA adapter on it. CUDA only.")
    gradient_checkpointing: bool | None = Field(None, description="Recompute activations in the backward pass to "
                                                "save memory. Omitted: on for CUDA, off on the CPU.")
    num_processes: int = Field(1, ge=1, le=1024, description="Processes (one per GPU) under `accelerate launch`; 1: "
                               "a plain process.")
    accelerate_config: Literal["ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp"] | None = Field(
        None, description="A config shipped in trainers/accelerate/ to launch with (multi-GPU, DeepSpeed ZeRO, "
        "FSDP). Omitted: ddp when num_processes > 1.")

    @classmethod
    def resolve(cls, config: dict[str, Any], base_is_tiny: bool, hardware: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the run really uses: the config's values over the defaults, learning_rate by the base, and the
        resolved device (`Hardware.record()`); the job records it as its hyperparameters."""
        given = {key: config[key] for key in cls.model_fields if config.get(key) is not None}
        resolved = {**cls().model_dump(), **given}
        if resolved.get("learning_rate") is None:
            tiny, real = cls.learning_rate_defaults
            resolved["learning_rate"] = tiny if base_is_tiny else real
        return resolved | (hardware or {})

    @field_validator("device")
    @classmethod
    def _cuda_there(cls, device: str) -> str:
        if device == "cuda" and not cuda_visible():
            raise ValueError("device='cuda' but this machine shows no CUDA GPU; use 'auto' or 'cpu'")
        return device

    @field_validator("load_in_4bit")
    @classmethod
    def _qlora_needs_cuda(cls, load_in_4bit: bool, info: ValidationInfo) -> bool:
        if not load_in_4bit:
            return load_in_4bit
        device = info.data.get("device", "auto")
        if device == "cpu":
            raise ValueError("load_in_4bit=true (QLoRA) needs a CUDA GPU, and device='cpu' was asked for")
        if not cuda_visible():
            raise ValueError("load_in_4bit=true (QLoRA) needs a CUDA GPU, and this machine shows none; leave "
                             "load_in_4bit false to train LoRA in full precision")
        if not installed("bitsandbytes"):
            raise ValueError("load_in_4bit=true (QLoRA) needs the bitsandbytes package: pip install bitsandbytes")
        return load_in_4bit

    @field_validator("accelerate_config")
    @classmethod
    def _launcher_installed(cls, name: str | None, info: ValidationInfo) -> str | None:
        if name is None:
            return name
        if name.startswith("deepspeed") and not installed("deepspeed"):
            raise ValueError(f"accelerate_config={name!r} needs the deepspeed package: pip install deepspeed")
        if name in ("deepspeed_zero3", "fsdp") and info.data.get("load_in_4bit"):
            raise ValueError(f"accelerate_config={name!r} shards the weights, which this project does not do for a "
                             "4-bit base; use 'ddp' or 'deepspeed_zero2' with load_in_4bit")
        if name != "ddp" and info.data.get("device") == "cpu":
            raise ValueError(f"accelerate_config={name!r} needs CUDA GPUs; on the CPU use 'ddp' (or leave it out)")
        return name


def launch_argv(script: str | os.PathLike[str], config_path: str | os.PathLike[str], params: dict[str, Any],
                python: str | None = None) -> list[str]:
    """The command line of a trainer job: the script itself, or `accelerate launch` with a shipped config.

    `params` holds TrainerParams' fields (missing ones take their defaults). The trainer script is the same in
    both cases; under accelerate only rank 0 writes progress, the adapter and the summary.
    """
    python = python or sys.executable
    num_processes = int(params.get("num_processes") or 1)
    name = params.get("accelerate_config")
    if num_processes == 1 and name is None:
        return [python, str(script), "--config", str(config_path)]
    name = name or "ddp"
    # No `--cpu`: with it accelerate starts one process. On the CPU the ddp config's torchrun starts them all
    # and the trainer's use_cpu=True makes them a gloo group.
    # A free port, not torch's 29500: two jobs (or test runs) on one machine would meet there.
    return [python, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_DIR / f"{name}.yaml"),
            "--num_processes", str(num_processes), "--main_process_port", str(free_port()),
            str(script), "--config", str(config_path)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
