"""Statistics you can trust for small benchmarks: intervals and paired tests, not bare percentages.

A HumanEval run is 164 tasks; a 3-point difference between two checkpoints is often noise. Each model gets
a bootstrap 95% interval of pass@1 over tasks; two models on the same tasks get an exact McNemar test on
per-task pass/fail (n = 1 sample per task) or a paired bootstrap of the difference (n > 1), and the list of
tasks that flipped either way. Pure Python and seeded, so results are reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from roopik_rl_mcp.evaluation.results import Comparison, ModelResult, TaskVerdict

BOOTSTRAP_SAMPLES = 2000


def bootstrap_interval(values: Sequence[float], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-task values."""
    if not values:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    low = means[int((1 - level) / 2 * samples)]
    high = means[min(samples - 1, int((1 + level) / 2 * samples))]
    return (round(low, 4), round(high, 4))


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (a passed and b failed, and vice versa)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], seed: int = 0,
                     samples: int = BOOTSTRAP_SAMPLES) -> dict[str, float]:
    """Mean difference b - a with a 95% interval and the share of resamples where b is not better."""
    diffs = [y - x for x, y in zip(a, b)]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples)) if n else [0.0]
    return {"difference": round(sum(diffs) / n, 4) if n else 0.0,
            "ci95": [round(means[int(0.025 * len(means))], 4), round(means[min(len(means) - 1, int(0.975 * len(means)))], 4)],
            "p_not_better": round(sum(1 for m in means if m <= 0) / len(means), 4)}


def compare(label_a: str, label_b: str, per_task_a: Sequence[TaskVerdict],
            per_task_b: Sequence[TaskVerdict], seed: int = 0) -> Comparison:
    """b against a on the same tasks: the test that fits n, and the tasks that flipped."""
    if [t.task_id for t in per_task_a] != [t.task_id for t in per_task_b]:
        raise ValueError(f"{label_a} and {label_b} were not scored on the same tasks")
    rates_a = [t.c / t.n for t in per_task_a]
    rates_b = [t.c / t.n for t in per_task_b]
    gained = [t.task_id for t, x in zip(per_task_b, per_task_a) if t.c > 0 and x.c == 0]
    lost = [t.task_id for t, x in zip(per_task_b, per_task_a) if x.c > 0 and t.c == 0]
    difference = round(sum(rates_b) / len(rates_b) - sum(rates_a) / len(rates_a), 4) if rates_a else 0.0
    common = {"a": label_a, "b": label_b, "tasks_gained": gained, "tasks_lost": lost, "pass_rate_difference": difference}
    if all(t.n == 1 for t in [*per_task_a, *per_task_b]):
        return Comparison(test="exact McNemar (n=1)", p_value=round(mcnemar_exact(len(lost), len(gained)), 4), **common)
    boot = paired_bootstrap(rates_a, rates_b, seed=seed)
    return Comparison(test="paired bootstrap over tasks (n>1)", ci95=tuple(boot["ci95"]),
                      p_not_better=boot["p_not_better"], **common)


def markdown_table(models: Sequence[ModelResult], comparisons: Sequence[Comparison]) -> str:
    """The result as a table a person (or an agent) can paste."""
    ks = list(models[0].pass_at_k) if models else []
    lines = ["| model | " + " | ".join(ks) + " | 95% CI (pass@1) | solved | avg tokens | format |",
             "|---|" + "---|" * (len(ks) + 4)]
    for m in models:
        low, high = m.pass_at_1_ci95
        lines.append(f"| {m.label} | " + " | ".join(f"{m.pass_at_k[k]:.3f}" for k in ks)
                     + f" | {low:.3f}-{high:.3f} | {m.tasks_solved}/{len(m.per_task)} | "
                     f"{m.avg_generated_tokens:.1f} | {m.prompt_format} |")
    for c in comparisons:
        stat = f"p={c.p_value}" if c.p_value is not None else f"95% CI {c.ci95[0]:+.3f}..{c.ci95[1]:+.3f}, " \
            f"P(not better)={c.p_not_better}"
        lines.append(f"\n{c.b} vs {c.a}: {c.pass_rate_difference:+.3f} ({c.test}, {stat}); "
                     f"gained {len(c.tasks_gained)}, lost {len(c.tasks_lost)}")
    return "\n".join(lines)
