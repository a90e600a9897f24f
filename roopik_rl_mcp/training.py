"""start_dpo / start_training: export the training data and launch a trainer (`trainers/<kind>.py`) as a job."""

from __future__ import annotations

from pathlib import Path

from roopik_rl_mcp.config import python_executable, trainers_dir
from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.jobs import JobManager
from roopik_rl_mcp.model_refs import check_model_reference
from roopik_rl_mcp.preferences import write_export
from roopik_rl_mcp.schemas import ExportPreferencesInput, StartDpoInput, StartJobOutput, StartTrainingInput
from trainers.dpo import DPOParams
from trainers.grpo import GRPOParams
from trainers.params import launch_argv
from trainers.reward_model import RewardModelParams
from trainers.sft import SFTParams

MIN_PAIRS = 1


def start_dpo(jobs: JobManager, request: StartDpoInput) -> StartJobOutput:
    return _start_on_pairs(jobs, "dpo", request.base_model, request.min_margin, request.name,
                           request.model_dump(include=set(DPOParams.model_fields)))


def _start_on_pairs(jobs: JobManager, kind: str, base_model: str | None, min_margin: float, name: str | None,
                    params: dict) -> StartJobOutput:
    """A trainer on the exported preference pairs (dpo, reward_model)."""
    _check_base(jobs, base_model)
    exported: dict = {}

    def prepare(job_dir: Path) -> dict:
        export = write_export(jobs.store, job_dir / "pairs.jsonl", ExportPreferencesInput(min_margin=min_margin))
        if export.n_pairs < MIN_PAIRS:
            raise UserError("min_margin", f"no preference pairs to train on (0 pairs with margin >= {min_margin}); "
                                          "log some with log_preference first")
        exported["n_pairs"] = export.n_pairs
        return {"dataset_path": export.path}

    return _launch(jobs, kind, base_model, name, params, prepare, n_pairs=lambda: exported.get("n_pairs"))


def _passing_examples(store, min_reward: float | None) -> list[dict]:
    """SFT data: passing episodes as prompt/completion, optionally only those judged at least min_reward."""
    from roopik_rl_mcp.preferences import completion_of

    rows = []
    for episode in store.rows("episodes", "status = 'passed'"):
        if min_reward is not None:
            judgment = store.latest_judgment(episode["id"])
            if judgment is None or judgment["reward"] < min_reward:
                continue
        rows.append({"prompt": episode["task"], "completion": completion_of(episode["task"], episode["code"])})
    return rows


def _launch(jobs: JobManager, kind: str, base_model: str | None, name: str | None, params: dict,
            prepare, **counts: int | None) -> StartJobOutput:
    """Submit `trainers/<kind>.py` as a job: the one place every trainer's start goes through."""
    config = {"base_model": base_model if base_model != "tiny" else None, **params}  # None: resolved by the base
    script = str(trainers_dir() / f"{kind}.py")
    job = jobs.submit(kind, name, config, argv=lambda cfg: launch_argv(script, cfg, params, python_executable()),
                      prepare=prepare)
    return StartJobOutput(job_id=job["id"], kind=kind, status=job["status"], output_dir=job["output_dir"],
                          **{k: v() if callable(v) else v for k, v in counts.items()})


def _rows_file(name: str, rows: list[dict]):
    """A `prepare` step writing the trainer's data as JSONL into the job dir."""
    import json

    def prepare(job_dir: Path) -> dict:
        path = job_dir / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return {"dataset_path": str(path)}

    return prepare


def _check_base(jobs: JobManager, base_model: str | None) -> None:
    check_model_reference(base_model, "base_model")
    jobs.check_usable_output(base_model, "base_model")


def start_sft(jobs: JobManager, request: StartTrainingInput) -> StartJobOutput:
    _check_base(jobs, request.base_model)
    rows = _passing_examples(jobs.store, request.min_reward)
    if not rows:
        raise UserError("min_reward" if request.min_reward is not None else "kind",
                        "no passing episodes to train on; capture some with capture_feedback first")
    return _launch(jobs, "sft", request.base_model, request.name, (request.sft or SFTParams()).model_dump(),
                   _rows_file("examples.jsonl", rows), n_examples=len(rows))


def _grpo_tasks(store, source: str, limit: int | None) -> list[dict]:
    """Prompts with tests for GRPO: HumanEval's, or the user's Python episodes with check(candidate) tests."""
    if source == "humaneval":
        from roopik_rl_mcp.evaluation.tasks import load_tasks

        return [{"prompt": t.prompt, "test": t.test, "entry_point": t.entry_point} for t in load_tasks(limit=limit)]
    rows, seen = [], set()
    for episode in store.rows("episodes", "language = 'python' and entry_point is not null and test_code is not null"):
        if episode["task_key"] not in seen and "def check(" in episode["test_code"]:
            seen.add(episode["task_key"])
            rows.append({"prompt": episode["task"], "test": episode["test_code"], "entry_point": episode["entry_point"]})
    return rows[:limit] if limit else rows


def start_grpo(jobs: JobManager, request: StartTrainingInput) -> StartJobOutput:
    _check_base(jobs, request.base_model)
    tasks = _grpo_tasks(jobs.store, request.tasks, request.limit)
    if not tasks:
        raise UserError("tasks", "no tasks with tests to train on: capture Python episodes with check(candidate) tests "
                                 "and an entry point, or use tasks='humaneval'")
    return _launch(jobs, "grpo", request.base_model, request.name, (request.grpo or GRPOParams()).model_dump(),
                   _rows_file("tasks.jsonl", tasks), n_examples=len(tasks))


def start_training(jobs: JobManager, request: StartTrainingInput) -> StartJobOutput:
    if request.kind == "sft":
        return start_sft(jobs, request)
    if request.kind == "grpo":
        return start_grpo(jobs, request)
    if request.kind == "reward_model":
        return _start_on_pairs(jobs, "reward_model", request.base_model, request.min_margin, request.name,
                               (request.reward_model or RewardModelParams()).model_dump())
    params = (request.dpo or DPOParams()).model_dump()
    return start_dpo(jobs, StartDpoInput(**params, base_model=request.base_model, min_margin=request.min_margin,
                                         name=request.name))
