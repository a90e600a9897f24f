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


def _normalised(text: str) -> str:
    return " ".join(text.split())


def _store_pairs(store: Store, candidates) -> tuple[list[str], list[SkippedPair]]:
    """Check and insert every candidate in one write transaction (a batch of 1000 is one commit)."""
    created: list[str] = []
    skipped: list[SkippedPair] = []
    with store.transaction() as db:
        for candidate in candidates:
            pair_id, skip = _store_pair(store, db, **candidate)
            if pair_id:
                created.append(pair_id)
            if skip:
                skipped.append(skip)
    return created, skipped


def _store_pair(store: Store, db, *, prompt: str, chosen: str, rejected: str, chosen_reward: float | None,
                rejected_reward: float | None, source: str, chosen_episode_id: str | None = None,
                rejected_episode_id: str | None = None, how: str | None = None
                ) -> tuple[str | None, SkippedPair | None]:
    skip = dict(chosen_episode_id=chosen_episode_id, rejected_episode_id=rejected_episode_id)
    if _normalised(chosen) == _normalised(rejected):
        return None, SkippedPair(reason="chosen and rejected are the same text", **skip)
    key = pair_key(prompt, chosen, rejected)

    def existing(k: str) -> str | None:
        row = db.execute("select id from preferences where pair_key = ? limit 1", [k]).fetchone()
        return row[0] if row else None

    if found := existing(key):
        return None, SkippedPair(reason="duplicate of an existing pair", existing_id=found, **skip)
    if found := existing(pair_key(prompt, rejected, chosen)):
        return None, SkippedPair(reason="contradicts an existing pair (same texts, opposite preference)",
                                 existing_id=found, **skip)
    margin = None if chosen_reward is None or rejected_reward is None else round(chosen_reward - rejected_reward, 6)
    pair_id = new_id("pr")
    db["preferences"].insert(store._encode("preferences", {
        "id": pair_id, "created_at": time.time(), "prompt": prompt, "chosen": chosen, "rejected": rejected,
        "chosen_reward": chosen_reward, "rejected_reward": rejected_reward, "margin": margin,
        "source": source, "chosen_episode_id": chosen_episode_id, "rejected_episode_id": rejected_episode_id,
        "pair_key": key, "metadata": {"how": how or source},
    }))
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
    source = "episodes" if request.source == "explicit" else request.source
    return [dict(
        prompt=prompt, chosen=completion_of(prompt, chosen["code"]), rejected=completion_of(prompt, rejected["code"]),
        chosen_reward=_reward_of(store, chosen["id"]), rejected_reward=_reward_of(store, rejected["id"]),
        source=source, chosen_episode_id=chosen["id"], rejected_episode_id=rejected["id"], how="two episodes",
    )]


def _group_scores(store: Store) -> dict[tuple[str, str], tuple[float, float]]:
    """(episode a, episode b) -> (score of a, score of b) in the latest group comparison that ranked both."""
    scores: dict[tuple[str, str], tuple[float, float]] = {}
    for comparison in store.rows("comparisons", "kind = 'group'", order_by="created_at"):
        by_episode = {r["episode_id"]: r["score"] for r in (comparison["result"] or {}).get("ranking", [])}
        for a, b in itertools.permutations(by_episode, 2):
            scores[(a, b)] = (by_episode[a], by_episode[b])
    return scores


def _ordered(a: dict, b: dict, groups: dict, min_margin: float) -> tuple[dict, dict, str, float] | None:
    """(better, worse, how, strength) for two judged episodes of one task, or None when neither is clearly better.

    Execution first (a pass beats a failure, whatever the judge said), then a group ranking that holds
    both, then the reward margin. Strength orders the pairs a task keeps under its cap.
    """
    if (a["status"] == "passed") != (b["status"] == "passed"):
        better, worse = (a, b) if a["status"] == "passed" else (b, a)
        return better, worse, f"execution: passed vs {worse['status']}", 2.0
    if (a["id"], b["id"]) in groups:
        score_a, score_b = groups[(a["id"], b["id"])]
        how, margin, a_wins = "judge_group ranking", abs(score_a - score_b) / 10, score_a > score_b
        strength = 1.0 + margin
    else:
        how, margin, a_wins = "reward margin", abs(a["reward"] - b["reward"]), a["reward"] > b["reward"]
        strength = margin
    if margin <= 0 or margin < min_margin:
        return None
    better, worse = (a, b) if a_wins else (b, a)
    return better, worse, how, strength


def _auto_pairs(store: Store, request: LogPreferenceInput, skipped: list[SkippedPair]) -> list[dict]:
    from roopik_rl_mcp.episodes import task_key

    episodes = store.judged_episodes()
    if request.task:
        episodes = [e for e in episodes if e["task_key"] == task_key(request.task)]
    by_task: dict[str, list[dict]] = {}
    for episode in episodes:
        by_task.setdefault(episode["task_key"], []).append(episode)
    groups = _group_scores(store)
    candidates = []
    for group in by_task.values():
        ordered = []
        for a, b in itertools.combinations(group, 2):
            result = _ordered(a, b, groups, request.min_margin)
            if result is None:
                if a["reward"] != b["reward"]:
                    skipped.append(SkippedPair(reason="reward margin is below min_margin",
                                               margin=round(abs(a["reward"] - b["reward"]), 6),
                                               chosen_episode_id=a["id"], rejected_episode_id=b["id"]))
                continue
            ordered.append(result)
        ordered.sort(key=lambda item: item[3], reverse=True)
        seen: set[tuple[str, str]] = set()
        kept = 0
        for better, worse, how, _ in ordered:
            prompt = better["task"]
            chosen, rejected = completion_of(prompt, better["code"]), completion_of(prompt, worse["code"])
            content = (_normalised(chosen), _normalised(rejected))
            if content in seen:
                continue  # the same two texts from other episodes
            if kept >= request.max_pairs_per_task:
                skipped.append(SkippedPair(reason=f"over max_pairs_per_task ({request.max_pairs_per_task})",
                                           chosen_episode_id=better["id"], rejected_episode_id=worse["id"]))
                continue
            seen.add(content)
            kept += 1
            candidates.append(dict(
                prompt=prompt, chosen=chosen, rejected=rejected, chosen_reward=better["reward"],
                rejected_reward=worse["reward"], source="auto", chosen_episode_id=better["id"],
                rejected_episode_id=worse["id"], how=how,
            ))
    return candidates


def log_preference(store: Store, request: LogPreferenceInput) -> LogPreferenceOutput:
    skipped: list[SkippedPair] = []
    if request.auto:
        candidates = _auto_pairs(store, request, skipped)
    elif request.chosen_episode_id:
        candidates = _from_episodes(store, request)
    elif request.pairs is not None:
        candidates = [pair.model_dump() for pair in request.pairs]
    else:
        candidates = [dict(prompt=request.prompt, chosen=request.chosen, rejected=request.rejected,
                           chosen_reward=request.chosen_reward, rejected_reward=request.rejected_reward,
                           source=request.source)]
    created, refused = _store_pairs(store, candidates)
    return LogPreferenceOutput(created=created, skipped=skipped + refused, total_pairs=store.count("preferences"))


def export_preferences(store: Store, request: ExportPreferencesInput) -> ExportPreferencesOutput:
    """Writes TRL's preference format (JSONL) and a manifest beside it, optionally a dataset folder too.

    The client's path is confined (see client_paths); pairs with no known margin (explicit pairs given
    without rewards) are a direct preference and are always included.
    """
    if request.path:
        target = export_target(request.path)
    else:
        target = paths().exports / f"preferences-{time.strftime('%Y%m%d-%H%M%S')}-{new_id('x')[2:]}.jsonl"
    for path in (target, manifest_path_for(target)):
        check_writable(path, request.overwrite)
    if request.dataset_dir:
        folder = dataset_dir_for(target)
        if (folder.exists() or folder.is_symlink()) and not (request.overwrite and folder.is_dir()
                                                             and not folder.is_symlink()):
            raise UserError("dataset_dir", f"{folder} exists; pass overwrite=true to replace it")
    return write_export(store, target, request, overwrite=request.overwrite)


def manifest_path_for(target: Path) -> Path:
    return target.with_name(target.stem + ".manifest.json")


def dataset_dir_for(target: Path) -> Path:
    return target.with_name(target.stem + ".dataset")


def _row(pair: dict, conversational: bool) -> dict:
    """One pair in TRL's standard or conversational preference format."""
    if not conversational:
        return {"prompt": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"]}
    return {"prompt": [{"role": "user", "content": pair["prompt"]}],
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}]}


def _selected(store: Store, request: ExportPreferencesInput) -> tuple[list[dict], dict[str, int], list[str]]:
    """The pairs the filters keep, how many each filter left out, and the ids flagged as contaminated."""
    from roopik_rl_mcp.contamination import overlaps_benchmark

    languages = {e["id"]: e["language"] for e in store.rows("episodes")} if request.languages else {}
    left_out = {"below_margin": 0, "source": 0, "language": 0, "date": 0, "contaminated": 0}
    kept, flagged = [], []
    for pair in store.rows("preferences"):
        if pair["margin"] is not None and pair["margin"] < request.min_margin:
            left_out["below_margin"] += 1
        elif request.sources and pair["source"] not in request.sources:
            left_out["source"] += 1
        elif request.languages and languages.get(pair.get("chosen_episode_id") or "") not in request.languages:
            left_out["language"] += 1
        elif (request.since and pair["created_at"] < request.since) or (request.until and pair["created_at"] >= request.until):
            left_out["date"] += 1
        elif request.contamination != "off" and overlaps_benchmark(pair["prompt"]):
            if request.contamination == "drop":
                left_out["contaminated"] += 1
            else:
                flagged.append(pair["id"])
                kept.append(pair)
        else:
            kept.append(pair)
    return kept, left_out, flagged


def _judges_of(store: Store, pairs: list[dict]) -> list[dict]:
    """Which judge models and prompt templates scored the episodes behind these pairs."""
    episode_ids = {p[k] for p in pairs for k in ("chosen_episode_id", "rejected_episode_id") if p.get(k)}
    seen: dict[tuple, int] = {}
    for episode_id in episode_ids:
        judgment = store.latest_judgment(episode_id)
        if judgment:
            key = (judgment["judge"], judgment.get("model"), judgment.get("template_hash"))
            seen[key] = seen.get(key, 0) + 1
    return [{"judge": j, "model": m, "template_hash": t, "episodes": n} for (j, m, t), n in sorted(seen.items(), key=str)]


def write_export(store: Store, target: Path, request: ExportPreferencesInput | None = None,
                 overwrite: bool = False) -> ExportPreferencesOutput:
    """The export itself, to a path the caller has already vetted (a client's, or a job's own directory)."""
    request = request or ExportPreferencesInput()
    kept, left_out, flagged = _selected(store, request)
    conversational = request.format == "conversational"
    rows = [_row(pair, conversational) for pair in kept]
    write_atomically(target, (json.dumps(row) + "\n" for row in rows), overwrite)
    folder = None
    if request.dataset_dir:
        folder = _save_dataset(rows, dataset_dir_for(target))
    manifest_path = manifest_path_for(target)
    manifest = {
        "path": str(target),
        "dataset_dir": str(folder) if folder else None,
        "n_pairs": len(kept),
        "left_out": left_out,
        "filters": request.model_dump(include={"min_margin", "sources", "languages", "since", "until", "contamination"}),
        "sources": {s: sum(r["source"] == s for r in kept) for s in sorted({r["source"] for r in kept})},
        "how": {h: sum((r.get("metadata") or {}).get("how") == h for r in kept)
                for h in sorted({(r.get("metadata") or {}).get("how") or r["source"] for r in kept})},
        "contamination": {"benchmark": "HumanEval", "method": "shared 10-word run in the prompt",
                          "flagged_pair_ids": flagged, "dropped": left_out["contaminated"]},
        "judges": _judges_of(store, kept),
        "pair_ids": [r["id"] for r in kept],
        "format": f"TRL preference JSONL ({request.format}): prompt, chosen, rejected",
        "created_at": time.time(),
    }
    write_atomically(manifest_path, [json.dumps(manifest, indent=2)], overwrite=True)
    return ExportPreferencesOutput(path=str(target), manifest_path=str(manifest_path),
                                   dataset_dir=str(folder) if folder else None, n_pairs=len(kept),
                                   skipped_below_margin=left_out["below_margin"],
                                   contaminated=len(flagged) or left_out["contaminated"])


def _save_dataset(rows: list[dict], folder: Path) -> Path:
    """A Hugging Face dataset folder, written beside and then moved into place (nothing half-written)."""
    import shutil

    from datasets import Dataset

    staging = folder.with_name(f".{folder.name}.{new_id('tmp')}")
    Dataset.from_list(rows).save_to_disk(str(staging))
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    return folder
