"""UI feedback: build a React component (or serve a page), render it in a sandboxed headless Chromium, capture.

Importing this package imports neither Playwright nor Pillow-heavy code: `capture_ui` loads them on its
first call, so the MCP server starts as fast without a browser as with one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roopik_rl_mcp.ui.models import (
    BuildMessage,
    CheckResult,
    ConsoleMessage,
    FailedResponse,
    PageError,
    Screenshot,
    SourceLocation,
    UICaptureResult,
    UICheck,
    UITimings,
)
from roopik_rl_mcp.ui.runtime import UIRuntimeMissing, ensure_runtime, runtime_dir, runtime_problem


__all__ = ["BuildMessage", "CheckResult", "ConsoleMessage", "FailedResponse", "PageError", "Screenshot",
           "SourceLocation", "UICaptureResult", "UICheck", "UITimings", "UIRuntimeMissing", "capture_project",
           "capture_ui", "ensure_runtime", "parse_ui_checks", "runtime_dir", "runtime_problem", "shutdown"]


def capture_ui(code: str, language: str, *, ui_checks: Sequence[UICheck | dict[str, Any]] | None = None,
               viewport: Sequence[int] = (1280, 800), screenshots_at_ms: Sequence[int] | None = None,
               timeout_s: float = 20.0, filename: str | None = None) -> UICaptureResult:
    """Build `code` (tsx/jsx/ts/js: a module whose default export is a React component; html: a whole page),
    render it in the sandboxed browser, run `ui_checks`, and return what happened.

    Blocking; call it from a worker thread (anyio.to_thread.run_sync), several at once if you like. Bad
    input raises UserError (field + problem); a missing runtime or browser raises UIRuntimeMissing.
    """
    from roopik_rl_mcp.ui.capture import capture_ui as capture

    return capture(code, language, ui_checks=ui_checks, viewport=viewport, screenshots_at_ms=screenshots_at_ms,
                   timeout_s=timeout_s, filename=filename)


def capture_project(project_dir: str, *, ui_checks: Sequence[UICheck | dict[str, Any]] | None = None,
                    viewport: Sequence[int] = (1280, 800), screenshots_at_ms: Sequence[int] | None = None,
                    timeout_s: float = 20.0) -> UICaptureResult:
    """Build a Vite project with its own node_modules (sandboxed, read-only) and capture it like a component."""
    from roopik_rl_mcp.ui.capture import capture_project as capture

    return capture(project_dir, ui_checks=ui_checks, viewport=viewport, screenshots_at_ms=screenshots_at_ms,
                   timeout_s=timeout_s)


def parse_ui_checks(raw: Sequence[UICheck | dict[str, Any]] | None) -> list[UICheck]:
    """Validate ui_checks up front (UserError naming the step and field), e.g. before an episode is stored."""
    from roopik_rl_mcp.ui.checks import parse_ui_checks as parse

    return parse(raw)


def shutdown() -> None:
    """Close the browser and the build worker now (they also close at exit)."""
    import sys

    browser = sys.modules.get("roopik_rl_mcp.ui.browser")
    if browser is not None and browser._HOST is not None:
        browser._HOST.close()
    build = sys.modules.get("roopik_rl_mcp.ui.build")
    if build is not None and build._WORKER is not None:
        build._WORKER.stop()
