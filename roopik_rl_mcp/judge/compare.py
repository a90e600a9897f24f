"""Pairwise and group judging: verdicts that survive swapping the order of the answers.

LLM judges prefer whichever answer they see first (the median judge flips 44.8% of decisive verdicts
when the two swap places). So `judge_pair` asks in both orders and calls a disagreement a tie, recorded
as inconsistent; `judge_group` (RULER-style: the whole group of a task in one call) asks twice with the
order shuffled, averages each answer's scores and records how much the two orders disagreed. The offline
judge compares offline rewards, which no order can move. Every comparison is stored in `comparisons`,
where judge_stats finds its flip rate and log_preference(auto) its rankings.
"""

from __future__ import annotations

import random
import string
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from roopik_rl_mcp.config import prompts_dir
from roopik_rl_mcp.episodes import get_episode
from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.judge import llm, offline
from roopik_rl_mcp.judge.reward import combine
from roopik_rl_mcp.schemas import (
    GroupRank, JudgeGroupInput, JudgeGroupOutput, JudgePairInput, JudgePairOutput, PairOrderVerdict,
)
from roopik_rl_mcp.store import Store, new_id

PAIR_TEMPLATES = ("compare_system.md", "judge_pair.md")
GROUP_TEMPLATES = ("compare_system.md", "judge_group.md")


class PairVerdict(BaseModel):
    winner: Literal["A", "B", "tie"]
    rationale: str = ""


def _answer_block(episode: dict) -> str:
    errors = "; ".join(f"{e.get('kind')}: {e.get('message', '')[:200]}" for e in (episode.get("errors") or [])[:5])
    ui = episode.get("ui") or {}
    page = (f"\nvisible text: <untrusted-page-text>{llm.fence((ui.get('visible_text') or '')[:1000])}"
            "</untrusted-page-text>") if ui else ""
    return (f"<untrusted-code>\n{llm.fence(episode['code'][:12_000])}\n</untrusted-code>\n"
            f"status: {episode['status']}, tests passed: {episode.get('tests_passed') or 0} / "
            f"{episode.get('tests_total') or 0}\nerrors: <untrusted-errors>{llm.fence(errors) or '(none)'}"
            f"</untrusted-errors>{page}")


def _messages(templates: tuple[str, str], user: str) -> list[dict]:
    return [{"role": "system", "content": (prompts_dir() / templates[0]).read_text()},
            {"role": "user", "content": user}]


def _same_task(episodes: list[dict], field: str) -> None:
    if len({e["task_key"] for e in episodes}) != 1:
        raise UserError(field, "the episodes are for different tasks; compare answers to the same task")


def _use_llm(judge: str, base_url: str | None) -> bool:
    if judge == "llm" and not (llm.configured() or base_url):
        raise UserError("judge", "'llm' needs an endpoint: set ROOPIK_JUDGE_BASE_URL (or OPENAI_BASE_URL / "
                                 "OPENAI_API_KEY), or pass base_url")
    return judge == "llm" or (judge == "auto" and bool(llm.configured() or base_url))


def offline_reward(episode: dict) -> float:
    scores, _ = offline.judge(episode)
    return combine(episode, scores)[0]


# -- pairs -------------------------------------------------------------------------------------------------
def judge_pair(store: Store, request: JudgePairInput) -> JudgePairOutput:
    a = get_episode(store, request.episode_a, "episode_a")
    b = get_episode(store, request.episode_b, "episode_b")
    if a["id"] == b["id"]:
        raise UserError("episode_b", "is the same episode as episode_a")
    _same_task([a, b], "episode_b")
    model = usage = None
    if _use_llm(request.judge, request.base_url):
        template = (prompts_dir() / "judge_pair.md").read_text()
        orders = [(a, b), (b, a)]
        conversations = [_messages(PAIR_TEMPLATES, template.format(task=llm.fence(a["task"]),
                                                                   answer_a=_answer_block(first),
                                                                   answer_b=_answer_block(second)))
                         for first, second in orders]
        try:
            asked = llm.ask(conversations, PairVerdict, model=request.model, base_url=request.base_url)
        except llm.JudgeUnavailable as exc:
            raise UserError("judge", str(exc)) from exc
        verdicts = []
        for (first, second), answer in zip(orders, asked.answers):
            winner = {"A": first["id"], "B": second["id"], "tie": None}[answer.winner]
            verdicts.append(PairOrderVerdict(shown_first=first["id"], winner=winner, rationale=answer.rationale))
        judge_name, model, usage = "llm", asked.endpoint.model, vars(asked.stats)
        template_hash = llm.template_hash(*PAIR_TEMPLATES)
    else:
        reward_a, reward_b = offline_reward(a), offline_reward(b)
        winner = a["id"] if reward_a > reward_b else b["id"] if reward_b > reward_a else None
        note = f"offline rewards {reward_a:.3f} vs {reward_b:.3f}"
        verdicts = [PairOrderVerdict(shown_first=a["id"], winner=winner, rationale=note),
                    PairOrderVerdict(shown_first=b["id"], winner=winner, rationale=note)]
        judge_name, template_hash = "offline", None
    consistent = verdicts[0].winner == verdicts[1].winner
    winner = verdicts[0].winner if consistent else None
    comparison_id = new_id("cmp")
    result = {"winner": winner, "verdicts": [v.model_dump() for v in verdicts]}
    store.insert("comparisons", {"id": comparison_id, "kind": "pair", "episode_ids": [a["id"], b["id"]],
                                 "judge": judge_name, "model": model, "template_hash": template_hash,
                                 "result": result, "consistent": int(consistent), "usage": usage})
    return JudgePairOutput(comparison_id=comparison_id, winner_episode_id=winner, tie=winner is None,
                           consistent=consistent, verdicts=verdicts, judge=judge_name, model=model)


# -- groups ------------------------------------------------------------------------------------------------
def _group_answer(labels: list[str]) -> type[BaseModel]:
    """The answer model for one ordering: exactly these labels, each scored 0-10."""

    class GroupVerdict(BaseModel):
        scores: dict[str, float] = Field(description="Label -> score 0-10.")
        rationale: str = ""

        @model_validator(mode="after")
        def _labels(self) -> GroupVerdict:
            if set(self.scores) != set(labels):
                raise ValueError(f"scores must have exactly the labels {labels}, got {sorted(self.scores)}")
            bad = {k: v for k, v in self.scores.items() if not 0 <= v <= 10}
            if bad:
                raise ValueError(f"scores must be between 0 and 10: {bad}")
            return self

    return GroupVerdict


def judge_group(store: Store, request: JudgeGroupInput) -> JudgeGroupOutput:
    episodes = [get_episode(store, episode_id, "episode_ids") for episode_id in request.episode_ids]
    _same_task(episodes, "episode_ids")
    model = usage = template_hash = None
    if _use_llm(request.judge, request.base_url):
        template = (prompts_dir() / "judge_group.md").read_text()
        rng = random.Random(request.seed)
        orders = [list(episodes), rng.sample(episodes, len(episodes))]
        if len(episodes) > 1 and orders[1] == orders[0]:
            orders[1] = list(reversed(episodes))
        labels = list(string.ascii_uppercase[: len(episodes)])
        conversations = []
        for order in orders:
            blocks = "\n\n".join(f"## Answer {label}\n{_answer_block(e)}" for label, e in zip(labels, order))
            listed = ", ".join(f'"{label}": <0-10>' for label in labels)
            conversations.append(_messages(GROUP_TEMPLATES, template.format(task=llm.fence(episodes[0]["task"]),
                                                                            answers=blocks, labels=listed)))
        try:
            asked = llm.ask(conversations, _group_answer(labels), model=request.model, base_url=request.base_url)
        except llm.JudgeUnavailable as exc:
            raise UserError("judge", str(exc)) from exc
        per_order = [{e["id"]: answer.scores[label] for label, e in zip(labels, order)}
                     for order, answer in zip(orders, asked.answers)]
        judge_name, model, usage = "llm", asked.endpoint.model, vars(asked.stats)
        template_hash = llm.template_hash(*GROUP_TEMPLATES)
    else:
        offline_scores = {e["id"]: round(10 * offline_reward(e), 2) for e in episodes}
        per_order = [offline_scores, offline_scores]
        judge_name = "offline"
    averaged = {e["id"]: round(sum(o[e["id"]] for o in per_order) / len(per_order), 3) for e in episodes}
    disagreement = round(sum(abs(per_order[0][i] - per_order[1][i]) for i in averaged) / len(averaged), 3)
    tops = [max(o, key=o.get) for o in per_order]
    ranked = sorted(averaged.items(), key=lambda item: item[1], reverse=True)
    ranking = [GroupRank(episode_id=episode_id, score=score, rank=index + 1)
               for index, (episode_id, score) in enumerate(ranked)]
    comparison_id = new_id("cmp")
    result = {"ranking": [r.model_dump() for r in ranking], "per_order": per_order, "disagreement": disagreement}
    store.insert("comparisons", {"id": comparison_id, "kind": "group", "episode_ids": request.episode_ids,
                                 "judge": judge_name, "model": model, "template_hash": template_hash,
                                 "result": result, "consistent": int(tops[0] == tops[1]), "usage": usage})
    return JudgeGroupOutput(comparison_id=comparison_id, ranking=ranking, disagreement=disagreement,
                            consistent=tops[0] == tops[1], judge=judge_name, model=model)
