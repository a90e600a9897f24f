"""start_dpo: export the preference pairs and launch `trainers/dpo.py` as a background job."""

from __future__ import annotations

from pathlib import Path

from roopik_rl_mcp.config import python_executable, trainers_dir
from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.jobs import JobManager
from roopik_rl_mcp.model_refs import check_model_reference
from roopik_rl_mcp.preferences import write_export
from roopik_rl_mcp.schemas import ExportPreferencesInput, StartDpoInput, StartJobOutput
from trainers.dpo import DPOParams

MIN_PAIRS = 1


def start_dpo(jobs: JobManager, request: StartDpoInput) -> StartJobOutput:
    check_model_reference(request.base_model, "base_model")
    jobs.check_usable_output(request.base_model, "base_model")
    exported: dict = {}

    def prepare(job_dir: Path) -> dict:
        export = write_export(jobs.store, job_dir / "pairs.jsonl", ExportPreferencesInput(min_margin=request.min_margin))
        if export.n_pairs < MIN_PAIRS:
            raise UserError("min_margin", f"no preference pairs to train on (0 pairs with margin >= {request.min_margin}); "
                                          "log some with log_preference first")
        exported["n_pairs"] = export.n_pairs
        return {"dataset_path": export.path}

    config = {
        "base_model": request.base_model if request.base_model != "tiny" else None,
        **request.model_dump(include=set(DPOParams.model_fields)),  # None: the trainer resolves it by base
    }
    script = str(trainers_dir() / "dpo.py")
    job = jobs.submit("dpo", request.name, config, argv=lambda cfg: [python_executable(), script, "--config", str(cfg)],
                      prepare=prepare)
    return StartJobOutput(job_id=job["id"], kind="dpo", status=job["status"], output_dir=job["output_dir"],
                          n_pairs=exported.get("n_pairs"))
