"""evaluate_checkpoint: pass@k of a base model or adapter (and its base, side by side) as a job."""

from __future__ import annotations

import json
from pathlib import Path

from roopik_rl_mcp.config import python_executable
from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.evaluation.tasks import load_tasks
from roopik_rl_mcp.jobs import STAGING_DIR, JobManager
from roopik_rl_mcp.model_refs import check_model_reference
from roopik_rl_mcp.schemas import EvaluateCheckpointInput, StartJobOutput


def models_to_compare(model: str | None, base_model: str | None) -> list[dict]:
    """An adapter is compared with its base; a plain model is evaluated alone (or against base_model)."""
    if model and (Path(model).expanduser() / "adapter_config.json").is_file():
        adapter_config = json.loads((Path(model).expanduser() / "adapter_config.json").read_text())
        base = base_model or adapter_config.get("base_model_name_or_path")
        return [{"label": "base", "model": base}, {"label": "adapter", "model": str(Path(model).expanduser())}]
    if base_model and base_model != model:
        return [{"label": "base", "model": base_model}, {"label": "model", "model": model}]
    return [{"label": "model", "model": model}]


def evaluate_checkpoint(jobs: JobManager, request: EvaluateCheckpointInput) -> StartJobOutput:
    for field in ("model", "base_model"):
        check_model_reference(getattr(request, field), field)
        jobs.check_usable_output(getattr(request, field), field)
    try:
        tasks = load_tasks(request.benchmark, limit=request.limit)
    except (ValueError, FileNotFoundError) as exc:
        raise UserError("benchmark", str(exc)) from exc
    models = models_to_compare(request.model, request.base_model)
    config = {
        "models": models,
        "max_steps": len(models) * len(tasks) * request.n_samples,
        "benchmark": request.benchmark, "limit": request.limit, "n_samples": request.n_samples, "k": request.k,
        "temperature": request.temperature, "max_new_tokens": request.max_new_tokens, "seed": 0,
        "n_tasks": len(tasks),
    }

    def prepare(job_dir: Path) -> dict:
        return {"result_path": str(job_dir / STAGING_DIR / "result.json")}

    job = jobs.submit("evaluation", None, config, prepare=prepare,
                      argv=lambda cfg: [python_executable(), "-m", "roopik_rl_mcp.evaluation.runner", "--config", str(cfg)])
    return StartJobOutput(job_id=job["id"], kind="evaluation", status=job["status"], output_dir=job["output_dir"])
