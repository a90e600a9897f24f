"""log_preference and export_preferences: chosen/rejected pairs, deduplicated, exported for TRL.

Pairs come from three places: given explicitly, from two episodes, or built automatically from judged
episodes of the same task whose rewards differ by at least `min_margin`. A pair's key hashes its
prompt, chosen and rejected texts, so the same pair is never stored twice.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from pathlib import Path

from roopik_rl_mcp.client_paths import check_writable, export_target, write_atomically
from roopik_rl_mcp.config import paths
from roopik_rl_mcp.episodes import get_episode
from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.schemas import (
    ExportPreferencesInput,
    ExportPreferencesOutput,
    LogPreferenceInput,
    LogPreferenceOutput,
    SkippedPair,
)
from roopik_rl_mcp.store import Store, new_id


def pair_key(prompt: str, chosen: str, rejected: str) -> str:
    joined = "\x00".join([" ".join(prompt.split()), chosen.strip(), rejected.strip()])
    return hashlib.sha256(joined.encode()).hexdigest()


def completion_of(prompt: str, code: str) -> str:
    """DPO wants the response after the prompt: drop the prompt when the code starts by repeating it."""
    return code[len(prompt):] if prompt and code.startswith(prompt) and len(code) > len(prompt) else code


def _store_pair(store: Store, *, prompt: str, chosen: str, rejected: str, chosen_reward: float | None,
                rejected_reward: float | None, source: str, chosen_episode_id: str | None = None,
                rejected_episode_id: str | None = None) -> tuple[str | None, SkippedPair | None]:
    skip = dict(chosen_episode_id=chosen_episode_id, rejected_episode_id=rejected_episode_id)
    if chosen.strip() == rejected.strip():
        return None, SkippedPair(reason="chosen and rejected are the same text", **skip)
    key = pair_key(prompt, chosen, rejected)
    existing = store.rows("preferences", "pair_key = ?", [key], limit=1)
    if existing:
        return None, SkippedPair(reason="duplicate of an existing pair", existing_id=existing[0]["id"], **skip)
    reversed_pair = store.rows("preferences", "pair_key = ?", [pair_key(prompt, rejected, chosen)], limit=1)
    if reversed_pair:
        return None, SkippedPair(reason="contradicts an existing pair (same texts, opposite preference)",
                                 existing_id=reversed_pair[0]["id"], **skip)
    margin = None if chosen_reward is None or rejected_reward is None else round(chosen_reward - rejected_reward, 6)
    pair_id = new_id("pr")
    store.insert("preferences", {
        "id": pair_id, "prompt": prompt, "chosen": chosen, "rejected": rejected,
        "chosen_reward": chosen_reward, "rejected_reward": rejected_reward, "margin": margin,
        "source": source, "chosen_episode_id": chosen_episode_id, "rejected_episode_id": rejected_episode_id,
        "pair_key": key, "metadata": {},
    })
    return pair_id, None


def _reward_of(store: Store, episode_id: str) -> float | None:
    judgment = store.latest_judgment(episode_id)
    return judgment["reward"] if judgment else None


def _from_episodes(store: Store, request: LogPreferenceInput):
    chosen = get_episode(store, request.chosen_episode_id, "chosen_episode_id")
    rejected = get_episode(store, request.rejected_episode_id, "rejected_episode_id")
    if chosen["task_key"] != rejected["task_key"]:
        raise UserError("rejected_episode_id", "the two episodes are for different tasks")
    prompt = chosen["task"]
    yield dict(
        prompt=prompt, chosen=completion_of(prompt, chosen["code"]), rejected=completion_of(prompt, rejected["code"]),
        chosen_reward=_reward_of(store, chosen["id"]), rejected_reward=_reward_of(store, rejected["id"]),
        source="episodes", chosen_episode_id=chosen["id"], rejected_episode_id=rejected["id"],
    )


def _auto_pairs(store: Store, request: LogPreferenceInput, skipped: list[SkippedPair]):
    from roopik_rl_mcp.episodes import task_key

    episodes = store.judged_episodes()
    if request.task:
        episodes = [e for e in episodes if e["task_key"] == task_key(request.task)]
    by_task: dict[str, list[dict]] = {}
    for episode in episodes:
        by_task.setdefault(episode["task_key"], []).append(episode)
    for group in by_task.values():
        group.sort(key=lambda e: e["reward"], reverse=True)
        for better, worse in itertools.combinations(group, 2):
            margin = better["reward"] - worse["reward"]
            if margin < request.min_margin or margin <= 0:
                if margin > 0:
                    skipped.append(SkippedPair(reason="reward margin is below min_margin", margin=round(margin, 6),
                                               chosen_episode_id=better["id"], rejected_episode_id=worse["id"]))
                continue
            prompt = better["task"]
            yield dict(
                prompt=prompt, chosen=completion_of(prompt, better["code"]), rejected=completion_of(prompt, worse["code"]),
                chosen_reward=better["reward"], rejected_reward=worse["reward"], source="auto",
                chosen_episode_id=better["id"], rejected_episode_id=worse["id"],
            )


def log_preference(store: Store, request: LogPreferenceInput) -> LogPreferenceOutput:
    created: list[str] = []
    skipped: list[SkippedPair] = []
    if request.auto:
        candidates = _auto_pairs(store, request, skipped)
    elif request.chosen_episode_id:
        candidates = _from_episodes(store, request)
    else:
        candidates = [dict(prompt=request.prompt, chosen=request.chosen, rejected=request.rejected,
                           chosen_reward=request.chosen_reward, rejected_reward=request.rejected_reward,
                           source="explicit")]
    for candidate in candidates:
        pair_id, skip = _store_pair(store, **candidate)
        if pair_id:
            created.append(pair_id)
        if skip:
            skipped.append(skip)
    return LogPreferenceOutput(created=created, skipped=skipped, total_pairs=store.count("preferences"))


def export_preferences(store: Store, request: ExportPreferencesInput) -> ExportPreferencesOutput:
    """Writes `prompt, chosen, rejected` JSONL (what TRL's DPOTrainer reads) and a manifest beside it.

    The client's path is confined (see client_paths); pairs with no known margin (explicit pairs given
    without rewards) are a direct preference and are always included.
    """
    if request.path:
        target = export_target(request.path)
    else:
        target = paths().exports / f"preferences-{time.strftime('%Y%m%d-%H%M%S')}-{new_id('x')[2:]}.jsonl"
    manifest_path = manifest_path_for(target)
    for path in (target, manifest_path):
        check_writable(path, request.overwrite)
    return write_export(store, target, request.min_margin, overwrite=request.overwrite)


def manifest_path_for(target: Path) -> Path:
    return target.with_name(target.stem + ".manifest.json")


def write_export(store: Store, target: Path, min_margin: float, overwrite: bool = False) -> ExportPreferencesOutput:
    """The export itself, to a path the caller has already vetted (a client's, or a job's own directory)."""
    rows = store.rows("preferences")
    kept = [r for r in rows if r["margin"] is None or r["margin"] >= min_margin]
    lines = (json.dumps({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}) + "\n" for r in kept)
    write_atomically(target, lines, overwrite)
    manifest_path = manifest_path_for(target)
    manifest = {
        "path": str(target),
        "n_pairs": len(kept),
        "skipped_below_margin": len(rows) - len(kept),
        "filters": {"min_margin": min_margin},
        "sources": {s: sum(r["source"] == s for r in kept) for s in ("explicit", "episodes", "auto")},
        "pair_ids": [r["id"] for r in kept],
        "format": "TRL preference JSONL: prompt, chosen, rejected",
        "created_at": time.time(),
    }
    write_atomically(manifest_path, [json.dumps(manifest, indent=2)], overwrite=True)
    return ExportPreferencesOutput(path=str(target), manifest_path=str(manifest_path), n_pairs=len(kept),
                                   skipped_below_margin=len(rows) - len(kept))
