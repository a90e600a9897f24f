"""Picks the judge, scores the episode, combines with execution signals, stores the judgment."""

from __future__ import annotations

from roopik_rl_mcp.episodes import get_episode
from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.judge import llm, offline
from roopik_rl_mcp.judge.reward import combine
from roopik_rl_mcp.schemas import JudgeOutputInput, JudgeOutputOutput
from roopik_rl_mcp.store import Store, new_id

MAX_RATIONALE_CHARS = 8_000
"""A judge's rationale is kept up to this length; an endpoint that answers megabytes is trimmed."""


def trimmed(text: str, limit: int = MAX_RATIONALE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f" [... trimmed: {len(text) - limit:,} more characters]"


def judge_output(store: Store, request: JudgeOutputInput) -> JudgeOutputOutput:
    episode = get_episode(store, request.episode_id)
    use_llm = request.judge == "llm" or (request.judge == "auto" and llm.configured())
    if request.judge == "llm" and not llm.configured():
        raise UserError("judge", "'llm' needs ROOPIK_JUDGE_BASE_URL (an OpenAI-compatible endpoint) in the server's environment")
    judge_name, judge_model, note = "offline", None, ""
    if use_llm:
        try:
            scores, rationale, judge_model = llm.judge(episode, request.model)
            judge_name = "llm"
        except llm.JudgeUnavailable as exc:
            if request.judge == "llm":
                raise UserError("judge", str(exc)) from exc
            note = f" (LLM judge unavailable, used the offline judge: {exc})"
    if judge_name == "offline":
        scores, rationale = offline.judge(episode)
    rationale = trimmed(rationale + note)
    reward, breakdown = combine(episode, scores, request.weights)
    overall = round((scores.functionality + scores.quality + scores.prompt_match) / 3, 2)
    judgment_id = new_id("jd")
    store.insert(
        "judgments",
        {
            "id": judgment_id,
            "episode_id": episode["id"],
            "judge": judge_name,
            "model": judge_model,
            "scores": scores.model_dump(),
            "overall": overall,
            "rationale": rationale,
            "reward": reward,
            "breakdown": breakdown,
            "weights": (request.weights.model_dump() if request.weights else None),
        },
    )
    return JudgeOutputOutput(
        judgment_id=judgment_id,
        episode_id=episode["id"],
        judge=judge_name,
        scores=scores,
        overall=overall,
        rationale=rationale,
        reward=reward,
        reward_breakdown=breakdown,
    )
