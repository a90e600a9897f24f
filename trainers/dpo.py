"""LoRA DPO on preference pairs with TRL's DPOTrainer, as one readable script.

    python trainers/dpo.py --config job.json        (or: python -m trainers.dpo --config job.json)

Config keys (JSON object):
    dataset_path     JSONL with string fields "prompt", "chosen", "rejected" (other fields ignored)
    output_dir       where the adapter, tokenizer and training_summary.json go
    progress_path    JSON-lines progress file (default: output_dir/progress.jsonl)
    base_model       hub id, local model dir, GGUF file (converted once, cached), LoRA adapter dir
                     (training continues that adapter), or null/"tiny" for the built-in tiny model
    tiny_model_path  where the tiny model is built/reused (default: $ROOPIK_RL_HOME/models/tiny-llama)
    the fields of DPOParams below (with TrainerParams' lora_r, lora_alpha, device, load_in_4bit,
    gradient_checkpointing, num_processes, accelerate_config: trainers/params.py), and
    lora_dropout 0.05, lora_target_modules ["q_proj","k_proj","v_proj","o_proj"],
    num_train_epochs (alias of epochs), gradient_accumulation_steps 1, seed 42, logging_steps 1,
    pref_eval_max_pairs 256 (pairs scored before/after training for the summary)

When the base's tokenizer has a chat template, the pairs go to TRL in its conversational format (the prompt
a user turn, chosen/rejected assistant turns), so training sees the template as it is used; otherwise as
plain prompt + completion text. The summary's "data_format" says which.

The summary's before/after numbers are plain sequence log-probs: margin = logp(chosen|prompt) -
logp(rejected|prompt), accuracy = fraction of pairs with margin > 0, under the base (or starting
adapter) model and under the trained adapter. They are measured on the training pairs, so they show
that training moved the model, not that it generalises.
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


class DPOParams(TrainerParams):
    """DPO's hyperparameters and their defaults: this class is the only place they are set.

    The start_dpo tool's input is built from it (roopik_rl_mcp.schemas.StartDpoInput), so the schema a
    client sees and the trainer agree. A default that depends on the base model is None here and
    resolved by `DPOParams.resolve`, whose result is recorded in the job's summary.
    """

    learning_rate_defaults: ClassVar[tuple[float, float]] = (5e-4, 5e-5)

    beta: float = Field(0.1, gt=0, le=10, description="DPO temperature: how far the policy may move from the reference.")
    learning_rate: float | None = Field(None, gt=0, le=1, description="Optimizer step size (AdamW). Omitted: 5e-4 "
                                        "for the tiny model, 5e-5 for a real one.")
    max_steps: int | None = Field(None, ge=1, le=100_000, description="Optimizer steps; omitted: epochs decide.")
    epochs: float = Field(1.0, gt=0, le=100, description="Passes over the pairs when max_steps is not given.")
    batch_size: int = Field(2, ge=1, le=512, description="Preference pairs per optimizer step.")
    max_length: int = Field(512, ge=16, le=32_768, description="Tokens kept per prompt + response; longer pairs "
                            "are truncated.")


def _get(config: dict[str, Any], key: str, default: Any) -> Any:
    """Config value, with JSON null treated like a missing key."""
    value = config.get(key)
    return default if value is None else value


def read_pairs(path: str | Path) -> list[dict[str, str]]:
    """Load and validate preference pairs; a bad line fails the job with its line number."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            for key in ("prompt", "chosen", "rejected"):
                if not isinstance(row.get(key), str) or (key != "prompt" and not row[key]):
                    raise ValueError(f"{path}:{lineno}: field {key!r} must be a non-empty string")
            pairs.append({"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]})
    if not pairs:
        raise ValueError(f"{path}: no preference pairs")
    return pairs


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def score_pairs(model: Any, tokenizer: Any, pairs: list[dict[str, str]], max_length: int, batch_size: int,
                data_format: str = "completion") -> list[tuple[float, float]]:
    """Sum log-prob of chosen and rejected completions given the prompt, tokenized the way DPOTrainer does.

    Like TRL: EOS appended to completions (completion format) or the chat template applied
    (conversational), the prompt is the common token prefix of prompt and prompt+completion, sequences
    truncated to max_length keeping the start.
    """
    import torch

    from roopik_rl_mcp.ml.finetune import prompt_and_full_ids

    seqs: list[tuple[list[int], int]] = []
    for pair in pairs:
        full = {}
        for key in ("chosen", "rejected"):
            prompt_ids, full[key] = prompt_and_full_ids(tokenizer, pair["prompt"], pair[key], data_format)
        n_prompt = min(_common_prefix(prompt_ids, full["chosen"]), _common_prefix(prompt_ids, full["rejected"]))
        n_prompt = max(n_prompt, 1)  # the first token has no prediction; score from the second
        seqs += [(full["chosen"][:max_length], n_prompt), (full["rejected"][:max_length], n_prompt)]

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores: list[float] = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(seqs), 2 * batch_size):
            chunk = seqs[start : start + 2 * batch_size]
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            scored = torch.zeros((len(chunk), width), dtype=torch.bool)  # positions whose token is scored
            for i, (ids, n_prompt) in enumerate(chunk):
                input_ids[i, : len(ids)] = torch.tensor(ids)
                attention[i, : len(ids)] = 1
                scored[i, n_prompt : len(ids)] = True
            input_ids, attention, scored = input_ids.to(device), attention.to(device), scored.to(device)
            logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
            token_logps = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
            scores += (token_logps * scored[:, 1:]).sum(-1).tolist()
    model.train(was_training)
    return [(scores[i], scores[i + 1]) for i in range(0, len(scores), 2)]


def preference_stats(scores: list[tuple[float, float]]) -> dict[str, float]:
    margins = [c - r for c, r in scores]
    return {
        "pref_accuracy": sum(m > 0 for m in margins) / len(margins),
        "logp_margin": sum(margins) / len(margins),
    }


def train(config: dict[str, Any], progress: ProgressWriter) -> dict[str, Any]:
    # Here, not at the top: the server imports DPOParams from this file.
    from roopik_rl_mcp.ml.finetune import (
        as_chat, chat_format, hardware_from, load_for_training, lora_config, save_adapter, save_summary,
    )
    from trainers.common import ProgressCallback, apply_thread_env

    apply_thread_env()
    started = time.time()
    output_dir = Path(config["output_dir"]).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)

    progress.message(f"loading dataset {config['dataset_path']}")
    pairs = read_pairs(config["dataset_path"])

    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    hardware = hardware_from(config)
    loaded = load_for_training(config.get("base_model"), hardware, tiny_path=config.get("tiny_model_path"),
                               progress=progress)
    model, tokenizer, base_path, base_is_tiny = loaded.model, loaded.tokenizer, loaded.base_path, loaded.base_is_tiny
    continuing = loaded.continuing  # base_model was an adapter dir: keep training that adapter
    data_format = chat_format(tokenizer)

    resolved = DPOParams.resolve(config | {"epochs": config.get("num_train_epochs", config.get("epochs"))},
                                 base_is_tiny, hardware.record())
    progress.message(f"hyperparameters: {json.dumps(resolved)}; data format: {data_format}")
    max_length = int(resolved["max_length"])
    batch_size = int(resolved["batch_size"])
    eval_pairs = pairs[: int(config.get("pref_eval_max_pairs") or 256)]
    progress.message(f"scoring {len(eval_pairs)} pairs before training")
    before = score_pairs(model, tokenizer, eval_pairs, max_length, batch_size, data_format)

    max_steps = resolved["max_steps"]
    args = DPOConfig(
        output_dir=str(output_dir),
        beta=float(resolved["beta"]),
        learning_rate=float(resolved["learning_rate"]),
        max_steps=int(max_steps) if max_steps else -1,
        num_train_epochs=float(resolved["epochs"]),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=int(config.get("gradient_accumulation_steps") or 1),
        max_length=max_length,  # TRL 1.x: no max_prompt_length; whole sequence truncated keeping the start
        seed=int(_get(config, "seed", 42)),
        logging_steps=int(config.get("logging_steps") or 1),
        **hardware.training_args(),  # use_cpu, bf16/fp16, gradient checkpointing: TRL's defaults assume a GPU
        report_to="none",
        save_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,  # the progress file is the progress bar
    )
    peft_config = None
    if not continuing:
        peft_config = lora_config(resolved, config, dropout=0.05)
    else:
        progress.message("base_model is a LoRA adapter: continuing it (lora_* keys ignored, reference = that adapter)")

    rows = [as_chat(pair, ("chosen", "rejected")) for pair in pairs] if data_format == "conversational" else pairs
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,  # TRL 1.x name; `tokenizer=` is gone
        peft_config=peft_config,
        callbacks=[ProgressCallback(progress)],
    )
    progress.message(f"training on {len(pairs)} pairs")
    result = trainer.train()

    if continuing and "ref" in trainer.model.peft_config:  # TRL's frozen reference copy; not part of the result
        trainer.model.delete_adapter("ref")
    save_adapter(trainer, tokenizer, output_dir, base_path, progress)

    progress.message(f"scoring {len(eval_pairs)} pairs after training")
    after = score_pairs(trainer.model, tokenizer, eval_pairs, max_length, batch_size, data_format)

    stats_before, stats_after = preference_stats(before), preference_stats(after)
    beta = args.beta
    # DPO's implicit reward: beta * (log pi - log pi_ref), per completion; compare chosen vs rejected.
    reward_margins = [beta * ((ac - bc) - (ar - br)) for (bc, br), (ac, ar) in zip(before, after)]
    last_log = next((log for log in reversed(trainer.state.log_history) if "loss" in log), {})
    final_metrics = {k: v for k, v in {**last_log, **result.metrics}.items() if isinstance(v, (int, float))}
    metrics: dict[str, Any] = {
        "n_pairs": len(pairs),
        "n_pairs_scored": len(eval_pairs),
        "steps": trainer.state.global_step,
        "pref_accuracy_before": stats_before["pref_accuracy"],
        "pref_accuracy_after": stats_after["pref_accuracy"],
        "logp_margin_before": stats_before["logp_margin"],
        "logp_margin_after": stats_after["logp_margin"],
        "implicit_reward_margin": sum(reward_margins) / len(reward_margins),
        "implicit_reward_accuracy": sum(m > 0 for m in reward_margins) / len(reward_margins),
        "train_loss": float(result.training_loss),
        "wall_seconds": round(time.time() - started, 2),
        **{k: float(v) for k, v in final_metrics.items() if k not in ("step",)},
    }
    save_summary(
        output_dir / "training_summary.json",
        {
            "method": "dpo-lora",
            "base_model": base_path,
            "base_model_is_tiny": base_is_tiny,
            "continued_adapter": continuing,
            "data_format": data_format,
            "dataset_path": str(config["dataset_path"]),
            "n_pairs": len(pairs),
            "steps": trainer.state.global_step,
            "config": config,
            "hyperparameters": resolved,
            "final_metrics": final_metrics,
            "preference_before": stats_before,
            "preference_after": stats_after,
            "metrics": metrics,
        },
    )
    return metrics


if __name__ == "__main__":
    from trainers.common import run_main

    run_main(train)
