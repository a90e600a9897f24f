"""What the four LoRA trainers (trainers/dpo.py, sft.py, grpo.py, reward_model.py) share around TRL.

- `resolve_device`: device="auto" and the defaults that hang on it (precision, gradient checkpointing,
  QLoRA), resolved in one visible place; its `record()` goes into each job's hyperparameters.
- `load_for_training`: the base (or adapter to continue) in that precision, 4-bit with QLoRA.
- `lora_config`, `save_adapter`: the LoRA adapter's config, and saving it (rank 0 only, base path fixed).
- `chat_format` / `as_chat` / `prompt_and_full_ids`: pairs in TRL's conversational format when the
  tokenizer has a chat template, so training and scoring see the template as it is used.

Under `accelerate launch` (trainers/accelerate/) every rank runs the same script; only rank 0 writes files.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from roopik_rl_mcp.ml import Reporter
from roopik_rl_mcp.ml.files import save_json

DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]  # attention projections of Llama/Qwen2/Mistral


def is_main_process() -> bool:
    """Rank 0, or not launched distributed (torchrun / accelerate launch set RANK for every process)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


# --------------------------------------------------------------------------------------------------
# Device, precision, gradient checkpointing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hardware:
    """How a job runs, resolved from the request (`device_requested`) and what this machine has."""

    device_requested: str
    device: str  # "cuda" or "cpu"
    precision: str  # "bf16", "fp16" or "fp32": the base's dtype and the Trainer's mixed precision
    load_in_4bit: bool
    gradient_checkpointing: bool
    num_processes: int

    @property
    def torch_device(self) -> str:
        return f"cuda:{local_rank()}" if self.device == "cuda" else "cpu"

    @property
    def dtype(self) -> Any:
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.precision]

    def record(self) -> dict[str, Any]:
        """The resolved values, for the job's recorded hyperparameters."""
        return asdict(self)

    def training_args(self) -> dict[str, Any]:
        """TrainingArguments keywords: TRL's configs default bf16 and gradient checkpointing to True, even on CPU."""
        return {"use_cpu": self.device == "cpu", "bf16": self.precision == "bf16", "fp16": self.precision == "fp16",
                checkpointing_field(): self.gradient_checkpointing}


def resolve_device(device: str | None = "auto", load_in_4bit: bool | None = False,
                   gradient_checkpointing: bool | None = None) -> Hardware:
    """device="auto": CUDA with bf16 where the GPU has it (fp16 otherwise), else the CPU in fp32.

    gradient_checkpointing None means on for CUDA, off on the CPU. load_in_4bit needs CUDA: refused here
    (ValueError naming the field) when the job would run on the CPU.
    """
    import torch

    device = device or "auto"
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ValueError("device='cuda' but torch sees no CUDA GPU here; use device='auto' or 'cpu'")
    on_cuda = has_cuda and device != "cpu"
    if load_in_4bit and not on_cuda:
        raise ValueError("load_in_4bit=true (QLoRA) needs a CUDA GPU, and this job runs on the CPU "
                         f"(device={device!r}); leave load_in_4bit false")
    if on_cuda:
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        precision = "fp32"
    return Hardware(
        device_requested=device,
        device="cuda" if on_cuda else "cpu",
        precision=precision,
        load_in_4bit=bool(load_in_4bit),
        gradient_checkpointing=on_cuda if gradient_checkpointing is None else bool(gradient_checkpointing),
        num_processes=world_size(),
    )


def hardware_from(config: dict[str, Any]) -> Hardware:
    """`resolve_device` on a job config's device, load_in_4bit and gradient_checkpointing keys."""
    return resolve_device(config.get("device"), config.get("load_in_4bit"), config.get("gradient_checkpointing"))


def checkpointing_field() -> str:
    """transformers 5.x renamed `gradient_checkpointing` to `activation_checkpointing` (old name warns)."""
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def quantization_config(hardware: Hardware) -> Any:
    """QLoRA's 4-bit NF4 (double quantized, computing in the job's precision), or None."""
    if not hardware.load_in_4bit:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=hardware.dtype)


def _kbit_preparer(hardware: Hardware) -> Any:
    if not hardware.load_in_4bit:
        return None

    def prepare(model: Any) -> Any:
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=hardware.gradient_checkpointing)

    return prepare


# --------------------------------------------------------------------------------------------------
# Loading, LoRA config, saving
# --------------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    base_path: str  # the resolved base folder or hub id the adapter is saved against
    base_is_tiny: bool
    continuing: bool  # the reference was an adapter: training continues it


def _is_tiny_folder(base_path: str) -> bool:
    return (Path(base_path) / "tiny_model.json").is_file()


def load_for_training(base_model: str | None, hardware: Hardware, *, tiny_path: str | None = None,
                      progress: Reporter | None = None) -> Loaded:
    """The causal LM to train (an adapter reference: its base with the adapter trainable) on the job's device."""
    from peft import PeftModel

    from roopik_rl_mcp.ml.loading import load_model_and_tokenizer
    from roopik_rl_mcp.ml.tiny import is_tiny

    if progress is not None:
        progress.message("loading tiny model" if is_tiny(base_model) else f"loading model {base_model}")
    model, tokenizer = load_model_and_tokenizer(
        base_model, tiny_path=tiny_path, is_trainable=True, progress=progress, device=hardware.torch_device,
        dtype=hardware.dtype, quantization_config=quantization_config(hardware), prepare_base=_kbit_preparer(hardware))
    continuing = isinstance(model, PeftModel)
    base_path = (model.get_base_model() if continuing else model).name_or_path
    return Loaded(model, tokenizer, base_path, _is_tiny_folder(base_path), continuing)


def load_sequence_classifier(base_model: str | None, hardware: Hardware, *, num_labels: int = 1,
                             tiny_path: str | None = None, progress: Reporter | None = None) -> Loaded:
    """A base (an adapter reference: the adapter's base) with a fresh `num_labels` head, e.g. a reward model."""
    from transformers import AutoModelForSequenceClassification

    from roopik_rl_mcp.ml.loading import base_and_adapter, load_base_model, load_tokenizer
    from roopik_rl_mcp.ml.tiny import is_tiny

    if progress is not None:
        progress.message("loading tiny model" if is_tiny(base_model) else f"loading model {base_model}")
    base_path, _ = base_and_adapter(base_model, tiny_path, progress)
    tokenizer = load_tokenizer(base_path)
    model = load_base_model(base_path, hardware.torch_device, dtype=hardware.dtype,
                            quantization_config=quantization_config(hardware),
                            auto_class=AutoModelForSequenceClassification, num_labels=num_labels)
    if hardware.load_in_4bit:
        model = _kbit_preparer(hardware)(model)
    model.config.pad_token_id = tokenizer.pad_token_id
    return Loaded(model, tokenizer, base_path, _is_tiny_folder(base_path), False)


def lora_config(resolved: dict[str, Any], config: dict[str, Any], *, task_type: str = "CAUSAL_LM",
                dropout: float = 0.05) -> Any:
    """The adapter: rank and alpha from the trainer's params; lora_dropout and lora_target_modules from the config."""
    from peft import LoraConfig

    chosen_dropout = config.get("lora_dropout")
    return LoraConfig(
        r=int(resolved["lora_r"]),
        lora_alpha=int(resolved["lora_alpha"]),
        lora_dropout=float(dropout if chosen_dropout is None else chosen_dropout),
        target_modules=config.get("lora_target_modules") or DEFAULT_TARGET_MODULES,
        bias="none",
        task_type=task_type,
    )


def save_adapter(trainer: Any, tokenizer: Any, output_dir: str | os.PathLike[str], base_path: str,
                 progress: Reporter | None = None) -> None:
    """Save the trained adapter and tokenizer, reloadable from the folder alone (base path written in).

    Every rank calls it (DeepSpeed/FSDP gather the weights collectively); rank 0 writes the files.
    """
    output_dir = Path(output_dir)
    if progress is not None:
        progress.message(f"saving adapter to {output_dir}")
    trainer.save_model(str(output_dir))
    if not trainer.is_world_process_zero():
        return
    tokenizer.save_pretrained(str(output_dir))
    adapter_config_path = output_dir / "adapter_config.json"
    adapter_config = json.loads(adapter_config_path.read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = base_path
    save_json(adapter_config_path, adapter_config)


def save_summary(path: str | os.PathLike[str], summary: dict[str, Any]) -> None:
    """The job's final summary (its verdict for the server): rank 0 only."""
    if is_main_process():
        save_json(path, summary)


# --------------------------------------------------------------------------------------------------
# Chat templates
# --------------------------------------------------------------------------------------------------


def chat_format(tokenizer: Any) -> str:
    """"conversational" when the tokenizer has a chat template (the data go through it), else "completion"."""
    return "conversational" if getattr(tokenizer, "chat_template", None) else "completion"


def as_chat(row: dict[str, str], completion_keys: tuple[str, ...]) -> dict[str, Any]:
    """TRL's conversational format: the prompt a user turn, each completion an assistant turn."""
    out: dict[str, Any] = {"prompt": [{"role": "user", "content": row["prompt"]}]}
    for key in completion_keys:
        out[key] = [{"role": "assistant", "content": row[key]}]
    return out


def prompt_and_full_ids(tokenizer: Any, prompt: str, completion: str, data_format: str) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of prompt + completion, rendered as TRL renders them for training.

    completion: plain text, EOS appended to the completion; conversational: the chat template, the prompt with
    the generation prompt.
    """
    if data_format == "conversational":
        chat = as_chat({"prompt": prompt, "completion": completion}, ("completion",))
        prompt_ids = tokenizer.apply_chat_template(chat["prompt"], tokenize=True, return_dict=True,
                                                   add_generation_prompt=True)["input_ids"]
        full_ids = tokenizer.apply_chat_template(chat["prompt"] + chat["completion"], tokenize=True,
                                                 return_dict=True)["input_ids"]
        return list(prompt_ids), list(full_ids)
    eos = tokenizer.eos_token or ""
    text = completion if completion.endswith(eos) else completion + eos
    return tokenizer(prompt)["input_ids"], tokenizer(prompt + text)["input_ids"]
