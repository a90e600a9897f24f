"""capture_feedback: run generated code and keep what happened as an episode."""

from __future__ import annotations

import ast
import hashlib

from roopik_rl_mcp.errors import NotFound, UserError
from roopik_rl_mcp.languages import UI_LANGUAGES, infer_language
from roopik_rl_mcp.sandbox import run_python
from roopik_rl_mcp.schemas import CaptureFeedbackInput, CaptureFeedbackOutput
from roopik_rl_mcp.store import Store, new_id

def task_key(task: str) -> str:
    """Episodes of the same task share this key (whitespace-insensitive), which is what pairing groups by."""
    return hashlib.sha256(" ".join(task.split()).encode()).hexdigest()[:16]


def infer_entry_point(code: str, tests: str | None) -> str | None:
    """For `check(candidate)` tests without an entry point: the code's only top-level function, if unique."""
    if not tests or "def check(" not in tests:
        return None
    try:
        names = [n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    except SyntaxError:
        return None
    return names[0] if len(names) == 1 else None


def capture_feedback(store: Store, request: CaptureFeedbackInput) -> CaptureFeedbackOutput:
    language = request.language or infer_language(request.code)
    if language in UI_LANGUAGES:
        how = "given" if request.language else "inferred from the code (pass language='python' if it is Python)"
        raise UserError("language", f"{language!r} ({how}) is UI code rendered in a browser, which is not supported "
                                    "yet; nothing was stored")
    entry_point = request.entry_point or infer_entry_point(request.code, request.tests)
    if request.tests and "def check(" in request.tests and not entry_point:
        raise UserError("entry_point", "required when tests define check(candidate) and the code has several functions")
    result = run_python(request.code, request.tests, entry_point, request.timeout_s)
    episode_id = new_id("ep")
    store.insert(
        "episodes",
        {
            "id": episode_id,
            "task": request.task,
            "task_key": task_key(request.task),
            "code": request.code,
            "language": language,
            "language_source": "given" if request.language else "inferred",
            "backend": "sandbox",
            "test_code": request.tests,
            "entry_point": entry_point,
            "model": request.model,
            "session_id": request.session_id,
            "metadata": request.metadata or {},
            "status": result.status,
            "passed": int(result.passed),
            "tests_passed": result.tests_passed,
            "tests_total": result.tests_total,
            "errors": [e.model_dump() for e in result.errors],
            "tests": [t.model_dump() for t in result.tests],
            "stdout": result.stdout,
            "stderr": result.stderr,
            "duration_ms": result.duration_ms,
            "isolation": result.isolation,
        },
    )
    return CaptureFeedbackOutput(
        episode_id=episode_id,
        status=result.status,
        language=language,
        language_inferred=request.language is None,
        passed=result.passed,
        tests_passed=result.tests_passed,
        tests_total=result.tests_total,
        errors=result.errors,
        stdout=result.stdout,
        stderr=result.stderr,
        duration_ms=result.duration_ms,
        isolation=result.isolation,
    )


def get_episode(store: Store, episode_id: str, field: str = "episode_id") -> dict:
    episode = store.get("episodes", episode_id)
    if episode is None:
        raise NotFound(field, episode_id, "episode")
    return episode


def episode_view(episode: dict, judgments: list[dict]) -> dict:
    """A stored episode as clients read it: the same names and types as the tools use.

    `tests` is the test code (as in capture_feedback's input), `test_outcomes` what each test did,
    `passed` a boolean (SQLite stores 0/1).
    """
    hidden = ("tests", "test_code", "task_key", "language_source")
    view = {key: value for key, value in episode.items() if key not in hidden}
    view.update(passed=bool(episode["passed"]), tests=episode.get("test_code"),
                language_inferred=episode.get("language_source") == "inferred",
                test_outcomes=episode.get("tests") or [], judgments=judgments)
    return view
