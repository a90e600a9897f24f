"""pass@k evaluation subprocess: `python -m roopik_rl_mcp.evaluation.runner --config config.json`.

Runs outside the MCP server (which never imports torch/transformers). For each model in the config it
generates `n_samples` completions per task, executes `prompt + completion` against the task's tests in
the project sandbox, and writes progress JSON lines plus one result JSON. Failures of any kind still end
with an `{"event": "end", "status": "failed"}` progress line and a non-zero exit code.

Config (JSON object):
    models          list of {"label": str, "model": hub id | local path | adapter dir | null (tiny)}
    tiny_model_path where the tiny 2-layer Llama is built/loaded when a model is null or "tiny"
                    (default: trainers.common's $ROOPIK_RL_HOME/models/tiny-llama)
    benchmark       "humaneval" (default) or a path to a JSONL file of tasks
    limit           first N tasks (optional);  task_ids: list of task ids (optional)
    n_samples       completions per task (default 1);  k: list of ints, each <= n_samples (default [1])
    temperature     0 = greedy (default 0.2);  top_p: nucleus sampling (default 0.95, sampling only)
    max_new_tokens  (default 256);  seed (default 0);  timeout_s per-completion execution (default 10)
    batch_size      sequences generated per generate() call (default 8)
    progress_path   JSONL progress log (default: progress.jsonl next to result_path)
    result_path     full result JSON (required)
"""

from __future__ import annotations

import gc
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `trainers` is a top-level package next to `roopik_rl_mcp`
    sys.path.insert(0, str(REPO_ROOT))

from roopik_rl_mcp.model_refs import check_model_reference  # noqa: E402
from roopik_rl_mcp.evaluation.metrics import aggregate_pass_at_k  # noqa: E402
from roopik_rl_mcp.evaluation.tasks import Task, load_tasks  # noqa: E402
from trainers.common import ProgressWriter, apply_thread_env, run_main  # noqa: E402

STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
"""Standard HumanEval stops: anything at column 0 after the function body ends the completion."""
MAX_STORED_COMPLETION = 2000


def truncate_completion(text: str, stops: tuple[str, ...] = STOP_SEQUENCES) -> str:
    """Cut `text` at the earliest stop sequence (the body of the prompted function is all we keep)."""
    cut = min((i for i in (text.find(s) for s in stops) if i != -1), default=len(text))
    return text[:cut]


@dataclass
class EvalConfig:
    """Validated runner config; see the module docstring for the keys."""

    models: list[dict[str, Any]]
    result_path: Path
    progress_path: Path
    tiny_model_path: str | None = None
    benchmark: str = "humaneval"
    limit: int | None = None
    task_ids: list[str] | None = None
    n_samples: int = 1
    k: list[int] = field(default_factory=lambda: [1])
    temperature: float = 0.2
    top_p: float = 0.95
    max_new_tokens: int = 256
    seed: int = 0
    timeout_s: float = 10.0
    batch_size: int = 8


def _int(raw: dict, key: str, default: int, minimum: int = 1) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"config '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def _float(raw: dict, key: str, default: float, minimum: float, exclusive: bool = False) -> float:
    value = raw.get(key, default)
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if bad or value < minimum or (exclusive and value == minimum):
        op = ">" if exclusive else ">="
        raise ValueError(f"config '{key}' must be a number {op} {minimum}, got {value!r}")
    return float(value)


def parse_config(raw: Any) -> EvalConfig:
    """Check every key up front so a bad request fails in milliseconds, not after a model load."""
    if not isinstance(raw, dict):
        raise ValueError("config must be a JSON object")
    if not raw.get("result_path"):
        raise ValueError("config 'result_path' is required")
    result_path = Path(raw["result_path"]).expanduser()
    progress_path = Path(raw.get("progress_path") or result_path.with_name("progress.jsonl")).expanduser()

    models = raw.get("models")
    if not isinstance(models, list) or not models:
        raise ValueError("config 'models' must be a non-empty list of {label, model}")
    labels: set[str] = set()
    for i, entry in enumerate(models):
        if not isinstance(entry, dict):
            raise ValueError(f"config models[{i}] must be an object with 'label' and 'model'")
        label, model = entry.get("label"), entry.get("model")
        if not isinstance(label, str) or not label or label == "task_id" or label in labels:
            raise ValueError(f"config models[{i}].label must be a unique non-empty string (not 'task_id'), got {label!r}")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ValueError(f"config models[{i}].model must be a hub id, a path, or null, got {model!r}")
        labels.add(label)

    n_samples = _int(raw, "n_samples", 1)
    ks = raw.get("k", [1])
    if isinstance(ks, int) and not isinstance(ks, bool):
        ks = [ks]
    if not isinstance(ks, list) or not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"config 'k' must be a non-empty list of positive integers, got {ks!r}")
    too_big = [k for k in ks if k > n_samples]
    if too_big:
        raise ValueError(f"config 'k' values {too_big} exceed n_samples={n_samples}: pass@k needs k <= n_samples")

    limit = raw.get("limit")
    if limit is not None:
        limit = _int(raw, "limit", 1)
    task_ids = raw.get("task_ids")
    if task_ids is not None and (not isinstance(task_ids, list) or not all(isinstance(t, str) for t in task_ids)):
        raise ValueError("config 'task_ids' must be a list of strings or null")

    return EvalConfig(
        models=[{"label": m["label"], "model": m.get("model")} for m in models],
        result_path=result_path,
        progress_path=progress_path,
        tiny_model_path=raw.get("tiny_model_path"),
        benchmark=raw.get("benchmark") or "humaneval",
        limit=limit,
        task_ids=task_ids or None,
        n_samples=n_samples,
        k=sorted(set(ks)),
        temperature=_float(raw, "temperature", 0.2, 0.0),
        top_p=_float(raw, "top_p", 0.95, 0.0, exclusive=True),
        max_new_tokens=_int(raw, "max_new_tokens", 256),
        seed=_int(raw, "seed", 0, minimum=0),
        timeout_s=_float(raw, "timeout_s", 10.0, 0.0, exclusive=True),
        batch_size=_int(raw, "batch_size", 8),
    )


def _check_local_path(model: str | None) -> None:
    """A reference that is not a model fails here, naming it, instead of deep inside a hub lookup."""
    check_model_reference(model, "model")


def load_model(model: str | None, tiny_model_path: str | None) -> tuple[Any, Any]:
    """Base model, local checkpoint or PEFT adapter dir (on its base) via the trainers' shared loader."""
    _check_local_path(model)
    from trainers.common import load_model_and_tokenizer

    try:
        model_obj, tokenizer = load_model_and_tokenizer(model, tiny_path=tiny_model_path)
    except Exception as exc:
        raise RuntimeError(f"failed to load model {model or 'tiny'!r}: {type(exc).__name__}: {exc}") from exc
    model_obj.eval()
    return model_obj, tokenizer


class Generator:
    """Samples completions for one model; stops early once every sequence in a batch hit a stop sequence."""

    def __init__(self, model: Any, tokenizer: Any, cfg: EvalConfig) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        self.torch, self.model, self.tokenizer, self.cfg = torch, model, tokenizer, cfg
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = int(pad) if pad is not None else 0
        self.do_sample = cfg.temperature > 0
        gen = self

        class _StopOnSequences(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                new = input_ids[:, gen._prompt_len :]
                texts = tokenizer.batch_decode(new, skip_special_tokens=True)
                return torch.tensor([any(s in t for s in STOP_SEQUENCES) for t in texts], device=input_ids.device)

        self._prompt_len = 0
        self.stopping = StoppingCriteriaList([_StopOnSequences()])

    def _decode_new(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        # Decode prompt+new and strip the decoded prompt: decoding new tokens alone can drop a leading
        # space with SentencePiece-style tokenizers, which would break the function body's indentation.
        full = self.tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True)
        head = self.tokenizer.decode(prompt_ids, skip_special_tokens=True)
        if full.startswith(head):
            return full[len(head) :]
        return self.tokenizer.decode(new_ids, skip_special_tokens=True)

    def sample(self, prompt: str, n: int) -> list[tuple[str, int]]:
        """`n` (raw completion, generated token count) pairs; greedy decoding is run once and repeated."""
        torch = self.torch
        enc = self.tokenizer(prompt, return_tensors="pt")
        input_ids = enc["input_ids"].to(self.model.device)
        attention = enc.get("attention_mask")
        attention = attention.to(self.model.device) if attention is not None else torch.ones_like(input_ids)
        self._prompt_len = input_ids.shape[1]
        prompt_list = input_ids[0].tolist()
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.cfg.max_new_tokens,
            "do_sample": self.do_sample,
            "pad_token_id": self.pad_token_id,
            "stopping_criteria": self.stopping,
        }
        if self.do_sample:
            kwargs.update(temperature=self.cfg.temperature, top_p=self.cfg.top_p)
        runs = n if self.do_sample else 1
        out: list[tuple[str, int]] = []
        while len(out) < runs:
            batch = min(self.cfg.batch_size, runs - len(out))
            with torch.inference_mode():
                seqs = self.model.generate(
                    input_ids=input_ids.repeat(batch, 1),
                    attention_mask=attention.repeat(batch, 1),
                    **kwargs,
                )
            for row in seqs[:, self._prompt_len :].tolist():
                n_tokens = sum(1 for t in row if t != self.pad_token_id)
                # Everything after the first pad/eos is padding for batch-mates still generating.
                if self.pad_token_id in row:
                    row = row[: row.index(self.pad_token_id)]
                out.append((self._decode_new(prompt_list, row), n_tokens))
        return out if self.do_sample else out * n


def execute_many(task: Task, completions: list[str], timeout_s: float) -> list[tuple[str, bool]]:
    """All completions of one task through one sandbox batch (a warm fork server, one fork per test)."""
    from roopik_rl_mcp.sandbox import BatchJob, run_batch

    jobs = [BatchJob(task.prompt + completion, task.test, task.entry_point, timeout_s) for completion in completions]
    try:
        results = run_batch(jobs)
    except Exception as exc:  # a sandbox crash counts against these samples, not the whole run
        return [(f"error:{type(exc).__name__}", False)] * len(completions)
    return [(str(getattr(r.status, "value", r.status)), bool(r.passed)) for r in results]


def evaluate_model(
    index: int, spec: dict[str, Any], tasks: list[Task], cfg: EvalConfig, progress: ProgressWriter, step0: int, max_steps: int
) -> dict[str, Any]:
    """Generate, execute and score one model; emits a progress `log` event after each task."""
    label, name = spec["label"], spec["model"]
    progress.message(f"loading model {label}: {name or 'tiny'}")
    t0 = time.time()
    model, tokenizer = load_model(name, cfg.tiny_model_path)
    progress.message(f"loaded {label} in {time.time() - t0:.1f}s; evaluating {len(tasks)} tasks x {cfg.n_samples} samples")
    _seed_all(cfg.seed)  # same RNG stream per model so base and adapter are compared like for like
    gen = Generator(model, tokenizer, cfg)

    per_task: list[dict[str, Any]] = []
    passed = tokens = 0
    step = step0
    for task in tasks:
        samples = gen.sample(task.prompt, cfg.n_samples)
        statuses: list[str] = []
        c = 0
        completions = [truncate_completion(raw) for raw, _ in samples]
        unique = list(dict.fromkeys(completions))  # identical completions (e.g. greedy) run once
        cache = dict(zip(unique, execute_many(task, unique, cfg.timeout_s)))
        first = completions[0] if completions else ""
        for completion, (raw, n_tok) in zip(completions, samples):
            status, ok = cache[completion]
            statuses.append(status)
            c += ok
            tokens += n_tok
        passed += c
        step += len(samples)
        per_task.append(
            {
                "task_id": task.task_id,
                "n": len(samples),
                "c": c,
                "status_counts": dict(Counter(statuses)),
                "first_completion": first[:MAX_STORED_COMPLETION],
                "first_status": statuses[0],
            }
        )
        progress.log(step, max_steps, {"model_index": index, "passed_so_far": passed})

    del model, gen
    gc.collect()  # free this model before the next one loads
    total = sum(t["n"] for t in per_task)
    return {
        "label": label,
        "model": name,
        "pass_at_k": aggregate_pass_at_k([(t["n"], t["c"]) for t in per_task], cfg.k),
        "passed": passed,
        "total": total,
        "tasks_solved": sum(1 for t in per_task if t["c"] > 0),
        "avg_generated_tokens": tokens / total if total else 0.0,
        "duration_s": round(time.time() - t0, 3),
        "per_task": per_task,
    }


def _seed_all(seed: int) -> None:
    """Python, numpy and torch (CPU and CUDA) RNGs."""
    import torch

    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    torch.manual_seed(seed)


def run(cfg: EvalConfig, progress: ProgressWriter) -> dict[str, Any]:
    """The whole evaluation; returns the result document (also written to `cfg.result_path`)."""
    tasks = load_tasks(cfg.benchmark, limit=cfg.limit, task_ids=cfg.task_ids)
    max_steps = len(cfg.models) * len(tasks) * cfg.n_samples
    progress.log(0, max_steps, {})
    notes: list[str] = []
    if cfg.temperature == 0 and cfg.n_samples > 1:
        notes.append("temperature 0 is greedy decoding: all n_samples completions per task are identical")
        progress.message(notes[-1])
    for spec in cfg.models:  # before importing torch: a typo'd path fails in well under a second
        _check_local_path(spec["model"])
    apply_thread_env()

    models: list[dict[str, Any]] = []
    step = 0
    for i, spec in enumerate(cfg.models):
        models.append(evaluate_model(i, spec, tasks, cfg, progress, step, max_steps))
        step += models[-1]["total"]

    comparison = []
    for j, task in enumerate(tasks):
        row: dict[str, Any] = {"task_id": task.task_id}
        for m in models:
            t = m["per_task"][j]
            row[m["label"]] = t["c"] / t["n"]
        comparison.append(row)
    return {
        "benchmark": cfg.benchmark,
        "n_tasks": len(tasks),
        "n_samples": cfg.n_samples,
        "k": cfg.k,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p if cfg.temperature > 0 else None,
        "max_new_tokens": cfg.max_new_tokens,
        "seed": cfg.seed,
        "stop_sequences": list(STOP_SEQUENCES),
        "notes": notes,
        "models": models,
        "comparison": comparison,
    }


def summary_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Flat floats for the end event, e.g. {"base/pass@1": 0.1, "base/tasks_solved": 3.0}."""
    out: dict[str, float] = {}
    for m in result["models"]:
        for key, value in m["pass_at_k"].items():
            out[f"{m['label']}/{key}"] = float(value)
        out[f"{m['label']}/tasks_solved"] = float(m["tasks_solved"])
        out[f"{m['label']}/avg_generated_tokens"] = float(m["avg_generated_tokens"])
    return out


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    os.replace(tmp, path)  # readers never see a half-written result


def evaluate(config: dict[str, Any], progress: ProgressWriter) -> dict[str, float]:
    """The job body for trainers.common.run_main, which owns the end event, exit codes and SIGTERM."""
    cfg = parse_config(config)
    result = run(cfg, progress)
    _write_json(cfg.result_path, result)
    return summary_metrics(result)


def main(argv: list[str] | None = None) -> None:
    run_main(evaluate, argv)


if __name__ == "__main__":
    main()
