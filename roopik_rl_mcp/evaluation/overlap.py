"""Does an adapter's training data overlap the benchmark it is about to be scored on?

An adapter trained on HumanEval's own prompts and then scored on HumanEval measures memory, not skill.
Its training_summary.json names the data it trained on (the job's export; a preference export's manifest
beside it names the file it describes), and each training prompt is checked against this evaluation's
task prompts with the export's contamination test (a shared run of 10 words, `roopik_rl_mcp.contamination`).
The result is a warning with the evaluation (at start and in the result), naming the tasks concerned.
Light imports only: the server runs this before the job starts.
"""

from __future__ import annotations

import json
from pathlib import Path

from roopik_rl_mcp.contamination import ngrams
from roopik_rl_mcp.evaluation.tasks import Task

MAX_TRAINING_BYTES = 200_000_000
SHOWN_TASKS = 5


def training_data(adapter: Path) -> Path | None:
    """The JSONL an adapter was trained on, from its summary (and the export manifest beside that file)."""
    try:
        summary = json.loads((adapter / "training_summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    data = summary.get("dataset_path") if isinstance(summary, dict) else None
    if not isinstance(data, str):
        return None
    path = Path(data)
    manifest = path.with_name(path.stem + ".manifest.json")
    if manifest.is_file():
        try:
            path = Path(json.loads(manifest.read_text(encoding="utf-8")).get("path") or path)
        except (OSError, ValueError):
            pass
    return path if path.is_file() and path.stat().st_size <= MAX_TRAINING_BYTES else None


def _prompt_text(prompt: object) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):  # the conversational format: [{role, content}, ...]
        return "\n".join(str(m.get("content", "")) for m in prompt if isinstance(m, dict))
    return ""


def overlapping(data: Path, tasks: list[Task]) -> tuple[int, int, list[str]]:
    """(training rows that overlap, rows, benchmark task ids they overlap), in the benchmark's order."""
    task_grams = [(t.task_id, ngrams(t.prompt)) for t in tasks]
    rows = hits = 0
    touched: set[str] = set()
    with open(data, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict):
                continue
            rows += 1
            grams = ngrams(_prompt_text(row.get("prompt")))
            found = {task_id for task_id, tg in task_grams if not grams.isdisjoint(tg)}
            hits += bool(found)
            touched |= found
    return hits, rows, [t.task_id for t in tasks if t.task_id in touched]


def overlap_warnings(models: list[dict], tasks: list[Task]) -> list[str]:
    """One warning per adapter whose training prompts share a 10-word run with the benchmark's prompts."""
    warnings = []
    for spec in models:
        folder = Path(spec["model"]).expanduser() if isinstance(spec.get("model"), str) else None
        if folder is None or not (folder / "adapter_config.json").is_file():
            continue
        data = training_data(folder)
        if data is None:
            continue
        hits, rows, task_ids = overlapping(data, tasks)
        if hits:
            shown = ", ".join(task_ids[:SHOWN_TASKS]) + (f" and {len(task_ids) - SHOWN_TASKS} more"
                                                         if len(task_ids) > SHOWN_TASKS else "")
            warnings.append(f"{spec['label']}: {hits} of its {rows} training rows ({data}) share a 10-word run with "
                            f"the prompts of {len(task_ids)} benchmark task(s) ({shown}): its score on those tasks "
                            "measures memory, not skill")
    return warnings
