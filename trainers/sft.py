"""LoRA supervised fine-tuning on prompt/completion pairs with TRL's SFTTrainer, as one readable script.

    python trainers/sft.py --config job.json        (or: python -m trainers.sft --config job.json)

Config keys (JSON object): dataset_path (JSONL with string fields "prompt" and "completion": by default
the passing episodes), output_dir, progress_path, base_model (hub id, model dir, or null/"tiny"),
tiny_model_path, and the fields of SFTParams below. The loss is on the completion only (TRL's
prompt-completion format). The summary reports the mean completion log-prob per token before and after
training, on the training data: it shows the run moved the model, not that it generalises.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make `trainers.common` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

if TYPE_CHECKING:
    from trainers.common import ProgressWriter

DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


class SFTParams(BaseModel):
    """SFT's hyperparameters and defaults: the only place they are set (the start_training tool uses it)."""

    model_config = ConfigDict(allow_inf_nan=False)

    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank: size of the low-rank update.")
    lora_alpha: int = Field(16, ge=1, le=1024, description="LoRA scaling (update scaled by lora_alpha / lora_r).")
    learning_rate: float | None = Field(None, gt=0, le=1, description="Optimizer step size (AdamW). Omitted: 1e-3 "
                                        "for the tiny model, 1e-4 for a real one.")
    max_steps: int | None = Field(None, ge=1, le=100_000, description="Optimizer steps; omitted: epochs decide.")
    epochs: float = Field(1.0, gt=0, le=100, description="Passes over the data when max_steps is not given.")
    batch_size: int = Field(2, ge=1, le=512, description="Examples per optimizer step.")
    max_length: int = Field(512, ge=16, le=32_768, description="Tokens kept per prompt + completion.")


def resolve_defaults(params: dict[str, Any], base_is_tiny: bool) -> dict[str, Any]:
    resolved = {**SFTParams().model_dump(), **{k: v for k, v in params.items() if v is not None}}
    if resolved.get("learning_rate") is None:
        resolved["learning_rate"] = 1e-3 if base_is_tiny else 1e-4
    return resolved


def read_examples(path: str | Path) -> list[dict[str, str]]:
    """Prompt/completion rows; a bad line fails the job with its line number."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("prompt"), str) or not isinstance(row.get("completion"), str) or not row["completion"]:
                raise ValueError(f"{path}:{lineno}: 'prompt' and a non-empty 'completion' must be strings")
            rows.append({"prompt": row["prompt"], "completion": row["completion"]})
    if not rows:
        raise ValueError(f"{path}: no examples")
    return rows


def completion_logprob(model: Any, tokenizer: Any, rows: list[dict[str, str]], max_length: int) -> float:
    """Mean log-prob per completion token given its prompt (higher is better)."""
    import torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for row in rows:
            prompt_ids = tokenizer(row["prompt"])["input_ids"]
            ids = tokenizer(row["prompt"] + row["completion"] + (tokenizer.eos_token or ""))["input_ids"][:max_length]
            start = max(1, min(len(prompt_ids), len(ids) - 1))
            tensor = torch.tensor([ids], device=device)
            logits = model(input_ids=tensor).logits[0, :-1].float()
            logps = torch.log_softmax(logits, dim=-1).gather(-1, tensor[0, 1:, None]).squeeze(-1)
            total += float(logps[start - 1:].sum())
            count += len(ids) - start
    model.train(was_training)
    return total / max(1, count)


def train(config: dict[str, Any], progress: ProgressWriter) -> dict[str, Any]:
    from trainers.common import (
        ProgressCallback, apply_thread_env, is_tiny, load_model_and_tokenizer, pick_device, save_json,
    )

    apply_thread_env()
    started = time.time()
    output_dir = Path(config["output_dir"]).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    progress.message(f"loading dataset {config['dataset_path']}")
    rows = read_examples(config["dataset_path"])

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    base_model = config.get("base_model")
    progress.message("loading tiny model" if is_tiny(base_model) else f"loading model {base_model}")
    model, tokenizer = load_model_and_tokenizer(base_model, tiny_path=config.get("tiny_model_path"),
                                                is_trainable=True, progress=progress)
    base_path = model.name_or_path
    base_is_tiny = (Path(base_path) / "tiny_model.json").is_file()
    resolved = resolve_defaults({key: config.get(key) for key in SFTParams.model_fields}, base_is_tiny)
    progress.message(f"hyperparameters: {json.dumps(resolved)}")
    device, _ = pick_device()
    on_cuda = device == "cuda"
    scored = rows[:128]
    before = completion_logprob(model, tokenizer, scored, resolved["max_length"])

    args = SFTConfig(
        output_dir=str(output_dir), learning_rate=float(resolved["learning_rate"]),
        max_steps=int(resolved["max_steps"]) if resolved["max_steps"] else -1,
        num_train_epochs=float(resolved["epochs"]), per_device_train_batch_size=int(resolved["batch_size"]),
        max_length=int(resolved["max_length"]), completion_only_loss=True, packing=False, logging_steps=1,
        use_cpu=not on_cuda, bf16=on_cuda and model.dtype == torch.bfloat16, fp16=False, report_to="none",
        save_strategy="no", dataloader_num_workers=0, disable_tqdm=True, seed=42,
    )
    peft_config = LoraConfig(r=int(resolved["lora_r"]), lora_alpha=int(resolved["lora_alpha"]), lora_dropout=0.05,
                             target_modules=DEFAULT_TARGET_MODULES, bias="none", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[ProgressCallback(progress)])
    progress.message(f"training on {len(rows)} examples")
    result = trainer.train()
    progress.message(f"saving adapter to {output_dir}")
    trainer.save_model(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    adapter_config_path = output_dir / "adapter_config.json"
    adapter_config = json.loads(adapter_config_path.read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = base_path
    save_json(adapter_config_path, adapter_config)
    after = completion_logprob(trainer.model, tokenizer, scored, resolved["max_length"])
    metrics = {"n_examples": len(rows), "steps": trainer.state.global_step, "train_loss": float(result.training_loss),
               "completion_logprob_before": before, "completion_logprob_after": after,
               "wall_seconds": round(time.time() - started, 2)}
    save_json(output_dir / "training_summary.json", {
        "method": "sft-lora", "base_model": base_path, "base_model_is_tiny": base_is_tiny,
        "dataset_path": str(config["dataset_path"]), "config": config, "hyperparameters": resolved,
        "metrics": metrics,
    })
    return metrics


if __name__ == "__main__":
    from trainers.common import run_main

    run_main(train)
