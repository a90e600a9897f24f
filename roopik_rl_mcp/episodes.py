"""capture_feedback: run generated code and keep what happened as an episode."""

from __future__ import annotations

import hashlib

from roopik_rl_mcp.errors import NotFound
from roopik_rl_mcp.languages import infer_language
from roopik_rl_mcp.artifacts import artifact_path, save_png
from roopik_rl_mcp.execution import execute
from roopik_rl_mcp.schemas import CaptureFeedbackInput, CaptureFeedbackOutput
from roopik_rl_mcp.store import Store, new_id

def task_key(task: str) -> str:
    """Episodes of the same task share this key (whitespace-insensitive), which is what pairing groups by."""
    return hashlib.sha256(" ".join(task.split()).encode()).hexdigest()[:16]


def capture_feedback(store: Store, request: CaptureFeedbackInput) -> CaptureFeedbackOutput:
    """Run the code with the executor for its kind, keep the outcome (and any screenshot) as an episode."""
    language = request.language or infer_language(request.code)
    result = execute(request, language)
    screenshot_ids = [save_png(store, shot.png) for shot in result.screenshots]
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
            "backend": result.backend,
            "test_code": request.tests,
            "entry_point": result.entry_point,
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
            "ui": result.ui.model_dump(mode="json") if result.ui else None,
            "screenshot_id": screenshot_ids[-1] if screenshot_ids else None,
            "screenshot_path": str(artifact_path(screenshot_ids[-1])) if screenshot_ids else None,
        },
    )
    return CaptureFeedbackOutput(
        episode_id=episode_id,
        status=result.status,
        language=language,
        language_inferred=request.language is None,
        passed=result.passed,
        compiled=result.compiled,
        tests_passed=result.tests_passed,
        tests_total=result.tests_total,
        errors=result.errors,
        stdout=result.stdout,
        stderr=result.stderr,
        duration_ms=result.duration_ms,
        isolation=result.isolation,
        backend=result.backend,
        ui=result.ui,
        screenshot_ids=screenshot_ids,
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
