"""The reward: objective execution signals plus the judge's scores, one number in [0, 1].

reward = w_c * compiled + w_e * (1 - error_rate) + w_f * functionality/10 + w_q * quality/10
         + w_p * prompt_match/10, weights normalised to sum to 1 (defaults 0.3/0.2/0.2/0.15/0.15).
"""

from __future__ import annotations

from roopik_rl_mcp.schemas import Scores, Weights


def execution_signals(episode: dict) -> tuple[float, float]:
    """(compiled, error_rate) from a stored episode."""
    compiled = 0.0 if episode["status"] == "build_error" else 1.0
    total = episode.get("tests_total") or 0
    if total:
        error_rate = 1.0 - (episode.get("tests_passed") or 0) / total
    else:
        error_rate = 0.0 if episode["status"] in ("no_tests", "passed") else 1.0  # a clean UI render without checks
    return compiled, error_rate


def combine(episode: dict, scores: Scores, weights: Weights | None = None) -> tuple[float, dict[str, float]]:
    weights = weights or Weights()
    raw = weights.model_dump()
    total = sum(raw.values())
    w = {name: value / total for name, value in raw.items()}
    compiled, error_rate = execution_signals(episode)
    breakdown = {
        "compiled": w["compiled"] * compiled,
        "error_rate": w["error_rate"] * (1.0 - error_rate),
        "functionality": w["functionality"] * scores.functionality / 10,
        "quality": w["quality"] * scores.quality / 10,
        "prompt_match": w["prompt_match"] * scores.prompt_match / 10,
    }
    breakdown = {name: round(value, 6) for name, value in breakdown.items()}
    reward = min(1.0, max(0.0, round(sum(breakdown.values()), 6)))
    return reward, breakdown
