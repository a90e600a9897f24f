"""evaluate_checkpoint: pass@k of one or several checkpoints (an adapter next to its base) as a job.

Everything that can be wrong with a request is found here, before a job exists: each model reference
(folder, GGUF that parses, adapter whose base resolves, API model with a name), the benchmark, k against
n_samples, a completion prompt for an API model. Light imports only: the server imports this module.
"""

from __future__ import annotations

import json
from pathlib import Path

from roopik_rl_mcp.config import python_executable
from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.evaluation.benchmarks import EPISODES, resolve_benchmark, write_tasks
from roopik_rl_mcp.evaluation.generators.openai_backend import MODEL_ENV, api_model_name, is_api_model
from roopik_rl_mcp.evaluation.generators.vllm_backend import vllm_installed
from roopik_rl_mcp.evaluation.overlap import overlap_warnings
from roopik_rl_mcp.jobs import STAGING_DIR, JobManager
from roopik_rl_mcp.model_refs import check_model_reference, has_chat_template
from roopik_rl_mcp.schemas import EvaluateCheckpointInput, StartEvaluationOutput


def models_to_compare(model: str | None, base_model: str | None) -> list[dict]:
    """An adapter is compared with its base; a plain model is evaluated alone (or against base_model)."""
    if model and (Path(model).expanduser() / "adapter_config.json").is_file():
        adapter_config = json.loads((Path(model).expanduser() / "adapter_config.json").read_text())
        base = base_model or adapter_config.get("base_model_name_or_path")
        return [{"label": "base", "model": base}, {"label": "adapter", "model": str(Path(model).expanduser())}]
    if base_model and base_model != model:
        return [{"label": "base", "model": base_model}, {"label": "model", "model": model}]
    return [{"label": "model", "model": model}]


def _check(jobs: JobManager, value: str | None, field: str, prompt_format: str) -> None:
    """Read-only and checked before a job exists: a model folder, a GGUF, an adapter, a hub id, or an API model."""
    if is_api_model(value):
        if not api_model_name(value):
            raise UserError(field, f"{value!r} names no API model: write 'openai:<name>' (e.g. 'openai:gpt-4o-mini') "
                                   f"or set {MODEL_ENV} in the server's environment")
        if prompt_format == "completion":
            raise UserError("prompt_format", f"{value} is prompted through the chat API: use prompt_format 'chat' "
                                             "or 'auto' (completion prompts need a local model)")
        return
    check_model_reference(value, field)
    jobs.check_usable_output(value, field)
    if prompt_format == "chat" and has_chat_template(value) is False:
        raise UserError("prompt_format", f"prompt_format 'chat' needs a chat template, and {value or 'the tiny model'} "
                                         "has none: use 'completion' (or 'auto', which picks per model)")


def _label_of(model: str | None, index: int) -> str:
    if model is None or model == "tiny":
        return "tiny"
    if is_api_model(model):
        return api_model_name(model) or f"model{index}"
    return model.rstrip("/").rsplit("/", 1)[-1] or f"model{index}"


def _labelled(models: list[str]) -> list[dict]:
    """Readable, unique labels: the folder, file or model name, numbered when two are the same."""
    out, seen = [], set()
    for index, model in enumerate(models):
        base = _label_of(model, index)
        label = base if base not in seen else f"{base}#{index}"
        seen.add(label)
        out.append({"label": label, "model": model})
    return out


def evaluate_checkpoint(jobs: JobManager, request: EvaluateCheckpointInput) -> StartEvaluationOutput:
    if request.models:
        for index, value in enumerate(request.models):
            _check(jobs, value, f"models.{index}", request.prompt_format)
    for field in ("model", "base_model"):
        _check(jobs, getattr(request, field), field, request.prompt_format)
    if request.generation_backend == "vllm" and not vllm_installed():
        raise UserError("generation_backend", "vllm is not installed in the server's Python: `pip install vllm` "
                                              "(needs a GPU), or use 'transformers' / 'auto'")
    try:
        tasks = resolve_benchmark(jobs.store, request.benchmark, request.limit)
    except (ValueError, FileNotFoundError) as exc:
        raise UserError("benchmark", str(exc)) from exc
    models = _labelled(request.models) if request.models else models_to_compare(request.model, request.base_model)
    episodes = request.benchmark.strip().lower() == EPISODES
    warnings = overlap_warnings(models, tasks)
    config = {
        "models": models,
        "max_steps": len(models) * len(tasks) * request.n_samples,
        "benchmark": request.benchmark, "benchmark_name": request.benchmark, "limit": request.limit,
        "n_samples": request.n_samples, "k": request.k, "temperature": request.temperature,
        "max_new_tokens": request.max_new_tokens, "seed": request.seed, "n_tasks": len(tasks),
        "prompt_format": request.prompt_format, "batch_size": request.batch_size, "warnings": warnings,
        "generation_backend": request.generation_backend,
    }

    def prepare(job_dir: Path) -> dict:
        extra = {"result_path": str(job_dir / STAGING_DIR / "result.json")}
        if episodes:  # the runner reads a file, never the database
            write_tasks(tasks, job_dir / "episode_tasks.jsonl")
            extra.update(benchmark=str(job_dir / "episode_tasks.jsonl"), limit=None)
        return extra

    job = jobs.submit("evaluation", None, config, prepare=prepare,
                      argv=lambda cfg: [python_executable(), "-m", "roopik_rl_mcp.evaluation.runner", "--config", str(cfg)])
    return StartEvaluationOutput(job_id=job["id"], kind="evaluation", status=job["status"], output_dir=job["output_dir"],
                                 models=[m["label"] for m in models], n_tasks=len(tasks), warnings=warnings)
