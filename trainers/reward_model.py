"""A Bradley-Terry reward model on the preference pairs with TRL's RewardTrainer (+ LoRA), as one script.

    python trainers/reward_model.py --config job.json     (or: python -m trainers.reward_model --config job.json)

Config keys (JSON object): dataset_path (JSONL with "prompt", "chosen", "rejected"), output_dir,
progress_path, base_model (hub id, model dir, or null/"tiny"), tiny_model_path, and the fields of
RewardModelParams below (with TrainerParams', trainers/params.py). A sequence-classification head with one output scores prompt + response; the
loss is -log sigmoid(r(chosen) - r(rejected)). `eval_fraction` of the pairs is held out (at least one when
there are four or more), and the summary reports the held-out pair accuracy before and after training: the
share of held-out pairs whose chosen response scores higher.
"""

from __future__ import annotations

import json
import random
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


class RewardModelParams(TrainerParams):
    """The reward model's hyperparameters and defaults: the only place they are set."""

    learning_rate_defaults: ClassVar[tuple[float, float]] = (1e-3, 1e-5)

    learning_rate: float | None = Field(None, gt=0, le=1, description="Omitted: 1e-3 for the tiny model, 1e-5 for a "
                                        "real one.")
    max_steps: int | None = Field(None, ge=1, le=100_000, description="Optimizer steps; omitted: epochs decide.")
    epochs: float = Field(1.0, gt=0, le=100, description="Passes over the training pairs when max_steps is not given.")
    batch_size: int = Field(2, ge=1, le=512, description="Pairs per optimizer step.")
    max_length: int = Field(512, ge=16, le=32_768, description="Tokens kept per prompt + response.")
    eval_fraction: float = Field(0.2, ge=0, lt=1, description="Share of the pairs held out for the accuracy.")


def pair_accuracy(model: Any, tokenizer: Any, pairs: list[dict[str, str]], max_length: int) -> float | None:
    """Share of pairs whose chosen response gets the higher reward (None without pairs)."""
    import torch

    if not pairs:
        return None
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    wins = 0
    with torch.no_grad():
        for pair in pairs:
            scores = []
            for key in ("chosen", "rejected"):
                ids = tokenizer(pair["prompt"] + pair[key], truncation=True, max_length=max_length,
                                return_tensors="pt").to(device)
                scores.append(float(model(**ids).logits[0, 0]))
            wins += scores[0] > scores[1]
    model.train(was_training)
    return wins / len(pairs)


def train(config: dict[str, Any], progress: ProgressWriter) -> dict[str, Any]:
    from roopik_rl_mcp.ml.finetune import (
        hardware_from, load_sequence_classifier, lora_config, save_adapter, save_summary,
    )
    from trainers.common import ProgressCallback, apply_thread_env
    from trainers.dpo import read_pairs

    apply_thread_env()
    started = time.time()
    output_dir = Path(config["output_dir"]).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    pairs = read_pairs(config["dataset_path"])

    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    hardware = hardware_from(config)
    # The folder (tiny model, hub snapshot or local dir; an adapter's base) the one-output head goes on.
    loaded = load_sequence_classifier(config.get("base_model"), hardware, tiny_path=config.get("tiny_model_path"),
                                      progress=progress)
    model, tokenizer, base_path, base_is_tiny = loaded.model, loaded.tokenizer, loaded.base_path, loaded.base_is_tiny
    resolved = RewardModelParams.resolve(config, base_is_tiny, hardware.record())
    progress.message(f"hyperparameters: {json.dumps(resolved)}")

    shuffled = pairs[:]
    random.Random(0).shuffle(shuffled)
    n_eval = int(len(shuffled) * resolved["eval_fraction"]) or (1 if len(shuffled) >= 4 and resolved["eval_fraction"] else 0)
    held_out, training = shuffled[:n_eval], shuffled[n_eval:]
    max_length = int(resolved["max_length"])
    before = pair_accuracy(model, tokenizer, held_out, max_length)
    args = RewardConfig(
        output_dir=str(output_dir), learning_rate=float(resolved["learning_rate"]),
        max_steps=int(resolved["max_steps"]) if resolved["max_steps"] else -1,
        num_train_epochs=float(resolved["epochs"]), per_device_train_batch_size=int(resolved["batch_size"]),
        max_length=max_length, logging_steps=1, **hardware.training_args(),
        report_to="none", save_strategy="no", dataloader_num_workers=0, disable_tqdm=True, seed=42,
    )
    peft_config = lora_config(resolved, config, task_type="SEQ_CLS", dropout=0.0)
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(training), processing_class=tokenizer,
                            peft_config=peft_config, callbacks=[ProgressCallback(progress)])
    progress.message(f"training on {len(training)} pairs, {len(held_out)} held out")
    result = trainer.train()
    after = pair_accuracy(trainer.model, tokenizer, held_out, max_length)
    train_accuracy = pair_accuracy(trainer.model, tokenizer, training[:256], max_length)
    save_adapter(trainer, tokenizer, output_dir, base_path, progress)
    metrics = {"n_pairs": len(pairs), "n_train": len(training), "n_held_out": len(held_out),
               "steps": trainer.state.global_step, "train_loss": float(result.training_loss),
               "held_out_accuracy_before": before, "held_out_accuracy_after": after,
               "train_accuracy_after": train_accuracy, "wall_seconds": round(time.time() - started, 2)}
    save_summary(output_dir / "training_summary.json", {
        "method": "reward-model-lora (Bradley-Terry)", "base_model": base_path, "base_model_is_tiny": base_is_tiny,
        "dataset_path": str(config["dataset_path"]), "config": config, "hyperparameters": resolved,
        "metrics": {k: v for k, v in metrics.items() if v is not None},
    })
    return {k: v for k, v in metrics.items() if v is not None}


if __name__ == "__main__":
    from trainers.common import run_main

    run_main(train)
