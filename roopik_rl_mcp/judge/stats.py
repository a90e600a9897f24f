"""judge_stats: how far each judge (model + prompt template) can be trusted, from what it did here.

Per (judge, model, template hash): calls, cache hits, parse failures, retries, out-of-range answers and
tokens; for pairwise comparisons the position-flip rate (the share of comparisons with a decisive verdict
whose two orderings disagreed: 1.0 for a judge that always prefers the first answer); the agreement of its
functionality score (>= 5) with the tests' verdict where tests ran; and its agreement with human
preferences (pairs logged with source="human" whose two episodes it judged).
"""

from __future__ import annotations

from collections import defaultdict

from roopik_rl_mcp.schemas import JudgeStatsOutput, JudgeStatsRow
from roopik_rl_mcp.store import Store

COUNTERS = ("parse_failures", "retries", "out_of_range", "prompt_tokens", "completion_tokens")


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def judge_stats(store: Store) -> JudgeStatsOutput:
    rows: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    episodes = {e["id"]: e for e in store.rows("episodes")}
    latest: dict[tuple, dict[str, float]] = defaultdict(dict)  # (judge, model) -> episode -> reward
    for judgment in store.rows("judgments", order_by="created_at"):
        key = (judgment["judge"], judgment.get("model"), judgment.get("template_hash"))
        row = rows[key]
        usage = judgment.get("usage") or {}
        row["calls"] += 1
        row["cache_hits"] += int(usage.get("cache_hit") or 0)
        for name in COUNTERS:
            row[name] += int(usage.get(name) or 0)
        episode = episodes.get(judgment["episode_id"])
        if episode and episode.get("tests_total"):
            row["test_n"] += 1
            row["test_agree"] += int(((judgment["scores"] or {}).get("functionality", 0) >= 5) == bool(episode["passed"]))
        latest[(judgment["judge"], judgment.get("model"))][judgment["episode_id"]] = judgment["reward"]
    for comparison in store.rows("comparisons", "kind = 'pair'"):
        row = rows[(comparison["judge"], comparison.get("model"), comparison.get("template_hash"))]
        row["pairs"] += 1
        winners = [v.get("winner") for v in (comparison["result"] or {}).get("verdicts", [])]
        if any(winners):
            row["decisive_pairs"] += 1
            row["flips"] += int(len(set(winners)) > 1)
    humans = store.rows("preferences", "source = 'human' and chosen_episode_id is not null")
    out = []
    for (judge, model, template), row in sorted(rows.items(), key=lambda item: tuple(str(x) for x in item[0])):
        rewards = latest.get((judge, model), {})
        judged = [p for p in humans if p["chosen_episode_id"] in rewards and p["rejected_episode_id"] in rewards]
        agree = sum(rewards[p["chosen_episode_id"]] > rewards[p["rejected_episode_id"]] for p in judged)
        out.append(JudgeStatsRow(
            judge=judge, model=model, template_hash=template, calls=row["calls"], cache_hits=row["cache_hits"],
            **{name: row[name] for name in COUNTERS},
            pair_comparisons=row["pairs"], position_flip_rate=_share(row["flips"], row["decisive_pairs"]),
            test_agreement=_share(row["test_agree"], row["test_n"]), test_agreement_n=row["test_n"],
            human_agreement=_share(agree, len(judged)), human_agreement_n=len(judged),
        ))
    return JudgeStatsOutput(judges=out)
