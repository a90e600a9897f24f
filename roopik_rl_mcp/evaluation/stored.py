"""Stored evaluations, listed and compared after the fact: did last week's adapter beat today's?

Every succeeded evaluate_checkpoint job leaves its result in the `evaluations` table. Comparing two of them
is only fair on the tasks both scored, so pass@k, the intervals and the paired tests are recomputed on the
shared tasks from the per-task verdicts; settings that differ (benchmark, samples, temperature, prompt
format, token budget) are named in the warnings rather than silently mixed. Light imports: the server
calls this module (matplotlib only when a chart is drawn).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.evaluation.metrics import aggregate_pass_at_k
from roopik_rl_mcp.evaluation.results import EvaluationResult, ModelResult
from roopik_rl_mcp.evaluation.statistics import bootstrap_interval, compare, markdown_table
from roopik_rl_mcp.schemas import (
    ComparedModel, CompareEvaluationsInput, CompareEvaluationsOutput, EvaluationSummary, ListEvaluationsOutput,
)
from roopik_rl_mcp.store import Store

SETTINGS_COMPARED = ("benchmark", "n_samples", "greedy", "temperature", "max_new_tokens", "prompt_format",
                     "timeout_s")
"""Settings that change what pass@k means; a difference is named in the warnings."""


def _parsed(row: dict) -> EvaluationResult:
    try:
        return EvaluationResult.model_validate(row["result"])
    except ValidationError as exc:
        raise UserError("ids", f"evaluation {row['id']!r} was stored by an older version in a form that cannot be "
                               f"compared ({exc.error_count()} fields differ); evaluate it again") from None


def list_evaluations(store: Store) -> ListEvaluationsOutput:
    out = []
    for row in store.rows("evaluations", order_by="created_at desc"):
        result = row["result"] or {}
        models = {m.get("label", "?"): float((m.get("pass_at_k") or {}).get("pass@1", 0.0))
                  for m in result.get("models", [])}
        out.append(EvaluationSummary(
            evaluation_id=row["id"], job_id=row["job_id"], created_at=row["created_at"],
            benchmark=str(result.get("benchmark") or row.get("benchmark") or ""), n_tasks=int(result.get("n_tasks", 0)),
            n_samples=int(result.get("n_samples", 0)), greedy=bool(result.get("greedy", False)), models=models))
    return ListEvaluationsOutput(evaluations=out)


def _find(store: Store, given: str) -> dict:
    """An evaluation row by its id, or by the id of the job that produced it."""
    row = store.get("evaluations", given)
    if row is None:
        found = store.rows("evaluations", "job_id = ?", [given])
        row = found[0] if found else None
    if row is None:
        job = store.get("jobs", given)
        if job is not None and job["kind"] == "evaluation":
            raise UserError("ids", f"job {given!r} is {job['status']}; only a succeeded evaluation can be compared")
        raise UserError("ids", f"no stored evaluation with id {given!r} (evaluation ids and evaluation job ids "
                               "are accepted; see list_evaluations)")
    return row


def _restricted(model: ModelResult, task_ids: list[str], ks: list[int], seed: int) -> ModelResult:
    """The model's verdicts on `task_ids` only, in that order, with pass@k (every k <= n) and its interval
    recomputed; the mean generated tokens stay the whole run's (the verdicts do not keep them per task)."""
    by_id = {v.task_id: v for v in model.per_task}
    verdicts = [by_id[t] for t in task_ids]
    return model.model_copy(update={
        "per_task": verdicts,
        "pass_at_k": aggregate_pass_at_k([(v.n, v.c) for v in verdicts], ks),
        "pass_at_1_ci95": bootstrap_interval([v.c / v.n for v in verdicts], seed=seed),
        "passed": sum(v.c for v in verdicts), "total": sum(v.n for v in verdicts),
        "tasks_solved": sum(1 for v in verdicts if v.c > 0),
    })


def _setting_warnings(ids: list[str], results: list[EvaluationResult]) -> list[str]:
    warnings = []
    for name in SETTINGS_COMPARED:
        values = [getattr(r, name) for r in results]
        if len(set(map(str, values))) > 1:
            warnings.append(f"{name} differs: " + ", ".join(f"{i}={v}" for i, v in zip(ids, values)))
    return warnings


def comparison(store: Store, request: CompareEvaluationsInput) -> tuple[CompareEvaluationsOutput, list[ModelResult], str]:
    """The comparison, the restricted models (for the chart) and a chart title."""
    rows = [_find(store, given) for given in dict.fromkeys(request.ids)]
    ids = [row["id"] for row in rows]
    results = [_parsed(row) for row in rows]
    task_sets = [[v.task_id for v in r.models[0].per_task] if r.models else [] for r in results]
    common = [t for t in task_sets[0] if all(t in set(other) for other in task_sets[1:])]
    if not common:
        raise UserError("ids", "these evaluations share no task: " + "; ".join(
            f"{i} scored {r.n_tasks} tasks of {r.benchmark}" for i, r in zip(ids, results)))
    warnings = _setting_warnings(ids, results)
    for i, tasks in zip(ids, task_sets):
        if len(tasks) > len(common):
            warnings.append(f"{i}: {len(tasks) - len(common)} of its {len(tasks)} tasks are not in every evaluation "
                            "and are left out")
    fewest_samples = min(v.n for r in results for m in r.models for v in m.per_task if v.task_id in common)
    ks = sorted({int(k) for r in results for k in r.k if int(k) <= fewest_samples}) or [1]
    labels = [m.label for r in results for m in r.models]
    models, compared = [], []
    for evaluation_id, result in zip(ids, results):
        for m in result.models:
            label = m.label if labels.count(m.label) == 1 else f"{m.label}@{evaluation_id}"
            restricted = _restricted(m, common, ks, seed=result.seed).model_copy(update={"label": label})
            models.append(restricted)
            compared.append(ComparedModel(
                label=label, evaluation_id=evaluation_id, model=m.model, prompt_format=m.prompt_format,
                pass_at_k=restricted.pass_at_k, pass_at_1_ci95=restricted.pass_at_1_ci95,
                tasks_solved=restricted.tasks_solved, n_tasks=len(common)))
    first = models[0]
    comparisons = [compare(first.label, m.label, first.per_task, m.per_task, seed=results[0].seed) for m in models[1:]]
    output = CompareEvaluationsOutput(
        evaluation_ids=ids, n_common_tasks=len(common), models=compared, comparisons=comparisons,
        table_markdown=markdown_table(models, comparisons), warnings=warnings)
    return output, models, f"{', '.join(ids)}: {len(common)} shared tasks"


def compare_evaluations(store: Store, request: CompareEvaluationsInput) -> tuple[CompareEvaluationsOutput, bytes]:
    """The comparison and its chart (pass@k per model, pass@1 with its 95% interval) as PNG bytes."""
    from roopik_rl_mcp.evaluation.chart import comparison_png

    output, models, title = comparison(store, request)
    return output, comparison_png(models, title)


def chart_of_job(job: dict) -> bytes:
    """The chart an evaluation job's runner wrote next to its result."""
    name = (job.get("result") or {}).get("chart_file")
    path = Path(job["output_dir"]) / name if name else None
    if job["status"] != "succeeded" or path is None or not path.is_file():
        raise UserError("job_id", f"evaluation job {job['id']!r} is {job['status']} and has no chart yet"
                        + ("; try again when it has succeeded" if job["status"] in ("queued", "running") else ""))
    return path.read_bytes()
