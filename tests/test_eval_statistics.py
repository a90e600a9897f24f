"""Statistics against values worked out by hand: pass@k, exact McNemar, bootstrap intervals, flips, the table."""

from __future__ import annotations

import math

import pytest

from roopik_rl_mcp.evaluation.metrics import aggregate_pass_at_k, pass_at_k
from roopik_rl_mcp.evaluation.results import ModelResult, TaskVerdict
from roopik_rl_mcp.evaluation.statistics import (
    bootstrap_interval, compare, markdown_table, mcnemar_exact, paired_bootstrap,
)


@pytest.mark.parametrize("n,c,k,expected", [
    (5, 2, 1, 2 / 5),                                 # c / n
    (5, 2, 2, 1 - math.comb(3, 2) / math.comb(5, 2)),  # 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    (5, 2, 3, 1 - math.comb(3, 3) / math.comb(5, 3)),  # 1 - 1/10 = 0.9
    (5, 2, 4, 1.0),                                   # only 3 wrong: any 4 include a right one
    (10, 1, 5, 0.5),                                  # 1 - C(9,5)/C(10,5) = 1 - 126/252
    (4, 0, 2, 0.0),
])
def test_pass_at_k_against_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_the_mean_over_tasks():
    # task 1: n=4, c=1 -> pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5; task 2: n=4, c=4 -> 1.0
    assert aggregate_pass_at_k([(4, 1), (4, 4)], [1, 2]) == pytest.approx({"pass@1": (0.25 + 1) / 2, "pass@2": 0.75})


def test_exact_mcnemar_on_known_tables():
    # discordant 1 vs 9: 2 * sum_{i<=1} C(10,i) / 2^10 = 2 * 11 / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024), "two-sided: symmetric"
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0


def verdicts(solved: list[int], n: int = 1) -> list[TaskVerdict]:
    return [TaskVerdict(task_id=f"t{i}", n=n, c=c, status_counts={}, first_status="", first_completion="")
            for i, c in enumerate(solved)]


def test_compare_single_samples_uses_mcnemar_and_lists_flips():
    a = verdicts([1, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    b = verdicts([1, 1, 0, 1, 1, 1, 1, 1, 1, 1])
    result = compare("base", "tuned", a, b)
    assert result.tasks_gained == ["t3", "t4", "t5", "t6", "t7", "t8"] and result.tasks_lost == ["t2"]
    assert result.test.startswith("exact McNemar") and result.ci95 is None
    assert result.p_value == pytest.approx(round(2 * (1 + 7) / 2 ** 7, 4))  # 1 lost, 6 gained: 2*P(X<=1), n=7
    assert result.pass_rate_difference == pytest.approx(0.5)


def test_compare_several_samples_uses_a_paired_bootstrap():
    a = verdicts([0, 1, 2, 0], n=4)
    b = verdicts([4, 3, 2, 4], n=4)
    result = compare("base", "tuned", a, b, seed=3)
    assert result.test.startswith("paired bootstrap") and result.p_value is None
    assert result.pass_rate_difference == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    low, high = result.ci95
    assert 0 <= low <= result.pass_rate_difference <= high <= 1
    # Only a resample made of task t2 alone (difference 0) is "not better": (1/4)^4 = 1/256.
    assert result.p_not_better == pytest.approx(1 / 256, abs=0.004)
    assert result.tasks_gained == ["t0", "t3"] and result.tasks_lost == []
    with pytest.raises(ValueError, match="same tasks"):
        compare("base", "tuned", a, b[:3])


def test_bootstrap_intervals():
    low, high = bootstrap_interval([1.0] * 50 + [0.0] * 50)
    assert 0.35 < low < 0.5 < high < 0.65
    assert bootstrap_interval([1.0] * 20) == (1.0, 1.0)
    assert bootstrap_interval([0.0, 1.0] * 30, seed=1) == bootstrap_interval([0.0, 1.0] * 30, seed=1), "seeded"
    flat = paired_bootstrap([0.5] * 10, [0.5] * 10)
    assert flat["difference"] == 0.0 and flat["ci95"] == [0.0, 0.0] and flat["p_not_better"] == 1.0


def test_markdown_table_lists_every_model_and_comparison():
    def model(label: str, solved: list[int]) -> ModelResult:
        per_task = verdicts(solved)
        return ModelResult(label=label, model=None, backend="transformers", prompt_format="completion",
                           samples_file=f"samples_{label}.jsonl", duration_s=1, generation_s=1, execution_s=0,
                           pass_at_k={"pass@1": sum(solved) / len(solved)}, pass_at_1_ci95=(0.1, 0.9),
                           passed=sum(solved), total=len(solved), tasks_solved=sum(solved), avg_generated_tokens=12.5,
                           per_task=per_task)

    base, tuned = model("base", [0, 1, 0, 0]), model("tuned", [1, 1, 1, 0])
    table = markdown_table([base, tuned], [compare("base", "tuned", base.per_task, tuned.per_task)])
    assert "| base | 0.250 | 0.100-0.900 | 1/4 | 12.5 | completion |" in table
    assert "| tuned | 0.750 |" in table
    assert "tuned vs base: +0.500 (exact McNemar (n=1), p=0.5); gained 2, lost 0" in table
