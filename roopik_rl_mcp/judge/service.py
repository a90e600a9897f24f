"""Picks the judge, scores the episode, combines with execution signals, stores the judgment.

An LLM verdict is cached by (template hash, model, settings, episode content): judging the same episode
again with the same judge reuses the stored scores and makes no endpoint call. judge="auto" falls back to
the offline judge on any endpoint failure and says why in `fallback`.
"""

from __future__ import annotations

import hashlib
import json
import time

from roopik_rl_mcp.episodes import get_episode
from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.judge import llm, offline
from roopik_rl_mcp.judge.endpoint import resolve
from roopik_rl_mcp.judge.reward import combine
from roopik_rl_mcp.schemas import JudgeOutputInput, JudgeOutputOutput, Scores
from roopik_rl_mcp.store import Store, new_id

MAX_RATIONALE_CHARS = 8_000
"""A judge's rationale is kept up to this length; an endpoint that answers megabytes is trimmed."""
CONTENT_FIELDS = ("task", "code", "language", "status", "tests_passed", "tests_total", "errors", "stdout",
                  "stderr", "ui", "screenshot_id")


def trimmed(text: str, limit: int = MAX_RATIONALE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f" [... trimmed: {len(text) - limit:,} more characters]"


def cache_key(episode: dict, model: str, base_url: str, samples: int) -> str:
    content = json.dumps({name: episode.get(name) for name in CONTENT_FIELDS}, sort_keys=True, default=str)
    parts = [llm.template_hash(), model, base_url, f"samples={samples}", hashlib.sha256(content.encode()).hexdigest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _cached(store: Store, key: str) -> dict | None:
    rows = store.rows("judgments", "cache_key = ? and judge = 'llm'", [key], order_by="created_at desc", limit=1)
    return rows[0] if rows else None


def _judge_with_reward_model(store: Store, episode: dict, request: JudgeOutputInput) -> JudgeOutputOutput:
    """The reward model decides the reward; the offline rubric's scores come along as the readable part."""
    from roopik_rl_mcp.judge.reward_model import reward_model_job, score_with
    from roopik_rl_mcp.preferences import completion_of

    if request.weights is not None:
        raise UserError("weights", "a reward_model judge gives the reward itself: weights combine an LLM or offline "
                                   "judge's scores, leave them out")
    job = reward_model_job(store, request.judge)
    started = time.perf_counter()
    raw, reward = score_with(job, episode["task"], completion_of(episode["task"], episode["code"]))
    latency_ms = int((time.perf_counter() - started) * 1000)
    scores, rubric = offline.judge(episode)
    reward = round(reward, 6)
    rationale = trimmed(f"Reward model {job['id']} scored {raw:.4f} (reward = sigmoid = {reward:.4f}). "
                        f"Scores from the offline rubric: {rubric}")
    overall = round((scores.functionality + scores.quality + scores.prompt_match) / 3, 2)
    judgment_id = new_id("jd")
    store.insert("judgments", {
        "id": judgment_id, "episode_id": episode["id"], "judge": "reward_model", "model": job["id"],
        "scores": scores.model_dump(), "overall": overall, "rationale": rationale, "reward": reward,
        "breakdown": {"reward_model": reward}, "weights": None, "latency_ms": latency_ms,
        "settings": {"raw_score": raw},
    })
    return JudgeOutputOutput(
        judgment_id=judgment_id, episode_id=episode["id"], judge="reward_model", scores=scores, overall=overall,
        rationale=rationale, reward=reward, reward_breakdown={"reward_model": reward}, model=job["id"],
        latency_ms=latency_ms, reward_model_score=round(raw, 6))


def judge_output(store: Store, request: JudgeOutputInput) -> JudgeOutputOutput:
    episode = get_episode(store, request.episode_id)
    if request.judge.startswith("reward_model:"):
        return _judge_with_reward_model(store, episode, request)
    use_llm = request.judge == "llm" or (request.judge == "auto" and (llm.configured() or request.base_url))
    if request.judge == "llm" and not (llm.configured() or request.base_url):
        raise UserError("judge", "'llm' needs an endpoint: set ROOPIK_JUDGE_BASE_URL (or OPENAI_BASE_URL / "
                                 "OPENAI_API_KEY) in the server's environment, or pass base_url")
    row: dict = {"judge": "offline", "model": None}
    fallback = None
    cached = False
    if use_llm:
        endpoint = resolve(request.model, request.base_url)
        key = cache_key(episode, endpoint.model, endpoint.base_url, request.samples)
        hit = _cached(store, key)
        if hit:
            cached = True
            scores, rationale = Scores(**hit["scores"]), hit["rationale"]
            row = {k: hit[k] for k in ("judge", "model", "template_hash", "settings", "samples", "spread")}
            row.update(cache_key=key, usage={"cache_hit": 1}, latency_ms=0)
        else:
            try:
                verdict = llm.judge(episode, request.model, request.samples, request.base_url)
            except llm.JudgeUnavailable as exc:
                if request.judge == "llm":
                    raise UserError("judge", str(exc)) from exc
                fallback = f"LLM judge unavailable, used the offline judge: {exc}"
            else:
                scores, rationale = verdict.scores, verdict.rationale
                row = {"judge": "llm", "model": verdict.model, "template_hash": llm.template_hash(),
                       "settings": verdict.settings, "samples": verdict.samples, "spread": verdict.spread,
                       "usage": vars(verdict.stats), "latency_ms": verdict.latency_ms, "cache_key": key}
    if row["judge"] == "offline":
        scores, rationale = offline.judge(episode)
        if fallback:
            rationale += f" ({fallback})"
    rationale = trimmed(rationale)
    reward, breakdown = combine(episode, scores, request.weights)
    overall = round((scores.functionality + scores.quality + scores.prompt_match) / 3, 2)
    judgment_id = new_id("jd")
    store.insert("judgments", {
        **row, "id": judgment_id, "episode_id": episode["id"], "scores": scores.model_dump(), "overall": overall,
        "rationale": rationale, "reward": reward, "breakdown": breakdown,
        "weights": request.weights.model_dump() if request.weights else None,
    })
    spread = row.get("spread") if request.samples > 1 else None
    return JudgeOutputOutput(
        judgment_id=judgment_id, episode_id=episode["id"], judge=row["judge"], scores=scores, overall=overall,
        rationale=rationale, reward=reward, reward_breakdown=breakdown, model=row.get("model"), cached=cached,
        spread=spread, latency_ms=row.get("latency_ms"), fallback=fallback,
    )
