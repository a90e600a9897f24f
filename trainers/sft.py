"""LoRA supervised fine-tuning on prompt/completion pairs with TRL's SFTTrainer, as one readable script.

    python trainers/sft.py --config job.json        (or: python -m trainers.sft --config job.json)

Config keys (JSON object): dataset_path (JSONL with string fields "prompt" and "completion": by default
the passing episodes), output_dir, progress_path, base_model (hub id, model dir, or null/"tiny"),
tiny_model_path, and the fields of SFTParams below (with TrainerParams', trainers/params.py). The loss is
on the completion only (TRL's prompt-completion format; conversational, the prompt a user turn and the
completion an assistant turn, when the tokenizer has a chat template: the summary's "data_format" says
which). The summary reports the mean completion log-prob per token before and after
training, on the training data: it shows the run moved the model, not that it generalises.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if __package__ in (None, ""):  # run as a script: make `trainers.common` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import Field  # noqa: E402

from trainers.params import TrainerParams  # noqa: E402

if TYPE_CHECKING:
    from trainers.common import ProgressWriter


class SFTParams(TrainerParams):
    """SFT's hyperparameters and defaults: the only place they are set (the start_training tool uses it)."""

    learning_rate_defaults: ClassVar[tuple[float, float]] = (1e-3, 1e-4)

    learning_rate: float | None = Field(None, gt=0, le=1, description="Optimizer step size (AdamW). Omitted: 1e-3 "
                                        "for the tiny model, 1e-4 for a real one.")
    max_steps: int | None = Field(None, ge=1, le=100_000, description="Optimizer steps; omitted: epochs decide.")
    epochs: float = Field(1.0, gt=0, le=100, description="Passes over the data when max_steps is not given.")
    batch_size: int = Field(2, ge=1, le=512, description="Examples per optimizer step.")
    max_length: int = Field(512, ge=16, le=32_768, description="Tokens kept per prompt + completion.")


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


def completion_logprob(model: Any, tokenizer: Any, rows: list[dict[str, str]], max_length: int,
                       data_format: str = "completion") -> float:
    """Mean log-prob per completion token given its prompt (higher is better), rendered as in training."""
    import torch

    from roopik_rl_mcp.ml.finetune import prompt_and_full_ids

    device = next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for row in rows:
            prompt_ids, ids = prompt_and_full_ids(tokenizer, row["prompt"], row["completion"], data_format)
            ids = ids[:max_length]
            start = max(1, min(len(prompt_ids), len(ids) - 1))
            tensor = torch.tensor([ids], device=device)
            logits = model(input_ids=tensor).logits[0, :-1].float()
            logps = torch.log_softmax(logits, dim=-1).gather(-1, tensor[0, 1:, None]).squeeze(-1)
            total += float(logps[start - 1:].sum())
            count += len(ids) - start
    model.train(was_training)
    return total / max(1, count)


def train(config: dict[str, Any], progress: ProgressWriter) -> dict[str, Any]:
    from roopik_rl_mcp.ml.finetune import (
        as_chat, chat_format, hardware_from, load_for_training, lora_config, save_adapter, save_summary,
    )
    from trainers.common import ProgressCallback, apply_thread_env

    apply_thread_env()
    started = time.time()
    output_dir = Path(config["output_dir"]).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    progress.message(f"loading dataset {config['dataset_path']}")
    rows = read_examples(config["dataset_path"])

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    hardware = hardware_from(config)
    loaded = load_for_training(config.get("base_model"), hardware, tiny_path=config.get("tiny_model_path"),
                               progress=progress)
    model, tokenizer, base_path, base_is_tiny = loaded.model, loaded.tokenizer, loaded.base_path, loaded.base_is_tiny
    data_format = chat_format(tokenizer)
    resolved = SFTParams.resolve(config, base_is_tiny, hardware.record())
    progress.message(f"hyperparameters: {json.dumps(resolved)}; data format: {data_format}")
    scored = rows[:128]
    before = completion_logprob(model, tokenizer, scored, resolved["max_length"], data_format)

    args = SFTConfig(
        output_dir=str(output_dir), learning_rate=float(resolved["learning_rate"]),
        max_steps=int(resolved["max_steps"]) if resolved["max_steps"] else -1,
        num_train_epochs=float(resolved["epochs"]), per_device_train_batch_size=int(resolved["batch_size"]),
        max_length=int(resolved["max_length"]), completion_only_loss=True, packing=False, logging_steps=1,
        **hardware.training_args(), report_to="none",
        save_strategy="no", dataloader_num_workers=0, disable_tqdm=True, seed=42,
    )
    train_rows = [as_chat(row, ("completion",)) for row in rows] if data_format == "conversational" else rows
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(train_rows),
                         processing_class=tokenizer, peft_config=None if loaded.continuing else lora_config(resolved, config, dropout=0.05),
                         callbacks=[ProgressCallback(progress)])
    progress.message(f"training on {len(rows)} examples")
    result = trainer.train()
    save_adapter(trainer, tokenizer, output_dir, base_path, progress)
    after = completion_logprob(trainer.model, tokenizer, scored, resolved["max_length"], data_format)
    metrics = {"n_examples": len(rows), "steps": trainer.state.global_step, "train_loss": float(result.training_loss),
               "completion_logprob_before": before, "completion_logprob_after": after,
               "wall_seconds": round(time.time() - started, 2)}
    save_summary(output_dir / "training_summary.json", {
        "method": "sft-lora", "base_model": base_path, "base_model_is_tiny": base_is_tiny, "data_format": data_format,
        "dataset_path": str(config["dataset_path"]), "config": config, "hyperparameters": resolved,
        "metrics": metrics,
    })
    return metrics


if __name__ == "__main__":
    from trainers.common import run_main

    run_main(train)
