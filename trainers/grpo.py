"""Online RL with TRL's GRPOTrainer and execution rewards from the hardened sandbox, as one readable script.

    python trainers/grpo.py --config job.json        (or: python -m trainers.grpo --config job.json)

Config keys (JSON object): dataset_path (JSONL with "prompt", "test", "entry_point": HumanEval-style
tasks or the user's episodes with tests), output_dir, progress_path, base_model (hub id, model dir, or
null/"tiny"), tiny_model_path, and the fields of GRPOParams below (with TrainerParams', trainers/params.py). For each prompt the policy samples
`num_generations` completions; each is run against the task's tests (roopik_rl_mcp.rewards.sandbox_reward:
share of tests passed minus length_penalty x characters / 100), and GRPO's clipped objective over the
group-normalised rewards, with `num_iterations` passes per batch, is the PPO-clip of the seeds' study.
The summary reports the mean reward of the first and last logged steps.
"""

from __future__ import annotations

import functools
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


class GRPOParams(TrainerParams):
    """GRPO's hyperparameters and defaults: the only place they are set (the start_training tool uses it)."""

    learning_rate_defaults: ClassVar[tuple[float, float]] = (1e-4, 1e-6)

    learning_rate: float | None = Field(None, gt=0, le=1, description="Omitted: 1e-4 for the tiny model, 1e-6 for a "
                                        "real one.")
    max_steps: int = Field(20, ge=1, le=100_000, description="Optimizer steps.")
    num_generations: int = Field(4, ge=2, le=64, description="Completions sampled per prompt (the group).")
    max_completion_length: int = Field(128, ge=8, le=4096, description="Most tokens per sampled completion.")
    num_iterations: int = Field(1, ge=1, le=16, description="Optimisation passes per generated batch (PPO-style).")
    beta: float = Field(0.0, ge=0, le=10, description="KL penalty towards the reference model (0: none, TRL's default).")
    temperature: float = Field(1.0, gt=0, le=2, description="Sampling temperature of the completions.")
    length_penalty: float = Field(0.0, ge=0, le=10, description="reward -= length_penalty x characters / 100.")


def read_tasks(path: str | Path) -> list[dict[str, str]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if line.strip():
                row = json.loads(line)
                if not all(isinstance(row.get(k), str) and row[k] for k in ("prompt", "test", "entry_point")):
                    raise ValueError(f"{path}:{lineno}: 'prompt', 'test' and 'entry_point' must be non-empty strings")
                rows.append({k: row[k] for k in ("prompt", "test", "entry_point")})
    if not rows:
        raise ValueError(f"{path}: no tasks")
    return rows


def train(config: dict[str, Any], progress: ProgressWriter) -> dict[str, Any]:
    from roopik_rl_mcp.ml.finetune import hardware_from, load_for_training, lora_config, save_adapter, save_summary
    from trainers.common import ProgressCallback, apply_thread_env

    apply_thread_env()
    started = time.time()
    output_dir = Path(config["output_dir"]).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    tasks = read_tasks(config["dataset_path"])

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from roopik_rl_mcp.rewards import sandbox_reward

    hardware = hardware_from(config)
    loaded = load_for_training(config.get("base_model"), hardware, tiny_path=config.get("tiny_model_path"),
                               progress=progress)
    model, tokenizer, base_path, base_is_tiny = loaded.model, loaded.tokenizer, loaded.base_path, loaded.base_is_tiny
    resolved = GRPOParams.resolve(config, base_is_tiny, hardware.record())
    progress.message(f"hyperparameters: {json.dumps(resolved)}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    generations = int(resolved["num_generations"])
    args = GRPOConfig(
        output_dir=str(output_dir), learning_rate=float(resolved["learning_rate"]), max_steps=int(resolved["max_steps"]),
        per_device_train_batch_size=generations, num_generations=generations,
        max_completion_length=int(resolved["max_completion_length"]), num_iterations=int(resolved["num_iterations"]),
        beta=float(resolved["beta"]), temperature=float(resolved["temperature"]), logging_steps=1,
        **hardware.training_args(), report_to="none",
        save_strategy="no", dataloader_num_workers=0, disable_tqdm=True, seed=42,
    )
    reward = functools.partial(sandbox_reward, length_penalty=float(resolved["length_penalty"]))
    reward.__name__ = "sandbox_reward"  # TRL names the logged reward after the function
    peft_config = None if loaded.continuing else lora_config(resolved, config, dropout=0.0)
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(tasks),
                          processing_class=tokenizer, peft_config=peft_config, callbacks=[ProgressCallback(progress)])
    progress.message(f"GRPO on {len(tasks)} tasks, {generations} completions each, rewards from the sandbox")
    result = trainer.train()
    save_adapter(trainer, tokenizer, output_dir, base_path, progress)
    rewards = [log["reward"] for log in trainer.state.log_history if "reward" in log]
    metrics = {"n_tasks": len(tasks), "steps": trainer.state.global_step, "train_loss": float(result.training_loss),
               "reward_first": rewards[0] if rewards else 0.0, "reward_last": rewards[-1] if rewards else 0.0,
               "reward_mean": sum(rewards) / len(rewards) if rewards else 0.0,
               "wall_seconds": round(time.time() - started, 2)}
    save_summary(output_dir / "training_summary.json", {
        "method": "grpo-lora", "base_model": base_path, "base_model_is_tiny": base_is_tiny,
        "dataset_path": str(config["dataset_path"]), "config": config, "hyperparameters": resolved,
        "reward_history": rewards, "metrics": metrics,
    })
    return metrics


if __name__ == "__main__":
    from trainers.common import run_main

    run_main(train)
