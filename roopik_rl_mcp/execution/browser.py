"""UI code (React components, HTML pages) built and rendered in the local sandboxed headless Chromium.

The capture itself lives in `roopik_rl_mcp.ui` (build worker, browser, checks); this module turns its
result into the one `Execution` every executor returns: build errors, uncaught page errors, console
errors and a blank page become `errors`; each `ui_checks` expectation becomes a test outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from roopik_rl_mcp.execution.base import ConsoleEntry, Execution, PageErrorEntry, Screenshot, UIObservation
from roopik_rl_mcp.sandbox.models import ExecError, TestOutcome

if TYPE_CHECKING:
    from roopik_rl_mcp.schemas import CaptureFeedbackInput
    from roopik_rl_mcp.ui.models import SourceLocation, UICaptureResult

PAGE_ERROR_KINDS = {"error": "PageError", "unhandledrejection": "UnhandledRejection", "render": "RenderError"}


def _where(location: SourceLocation | None) -> dict:
    if location is None:
        return {}
    return {"file": location.file, "line": location.line, "column": location.column}


def _errors(result: UICaptureResult) -> list[ExecError]:
    errors = [ExecError(kind="BuildError", message=m.text[:2000], file=m.file, line=m.line, column=m.column)
              for m in result.build_errors]
    errors += [ExecError(kind=PAGE_ERROR_KINDS.get(e.kind, "PageError"), message=e.message[:2000],
                         **_where(e.location)) for e in result.page_errors]
    errors += [ExecError(kind="ConsoleError", message=m.text[:2000], **_where(m.location))
               for m in result.console if m.level == "error"]
    if result.blank and result.compiled and result.status != "timeout":
        errors.append(ExecError(kind="BlankPage", message="the page rendered (nearly) nothing: every pixel is the "
                                                          "background colour"))
    errors += [ExecError(kind="CheckFailed", message=f"check {c.index}: {c.action} {c.selector or ''}: {c.message}"[:2000])
               for c in result.checks if c.is_test and not c.passed]
    if result.status == "timeout":
        errors.append(ExecError(kind="Timeout", message="; ".join(n for n in result.notes if "timed out" in n)
                                or "the page did not settle in time"))
    return errors


def _outcomes(result: UICaptureResult) -> list[TestOutcome]:
    return [TestOutcome(id=f"check {c.index}: {c.action}" + (f" {c.selector}" if c.selector else ""),
                        status="passed" if c.passed else ("not_run" if c.message.startswith("not run") else "failed"),
                        message=c.message or None)
            for c in result.checks if c.is_test]


def _location_text(location: SourceLocation | None) -> str | None:
    if location is None:
        return None
    return ":".join(str(part) for part in (location.file, location.line, location.column) if part is not None)


def to_execution(result: UICaptureResult, viewport: tuple[int, int]) -> Execution:
    ui = UIObservation(
        page_url="http://roopik.local/", viewport=viewport,
        console=[ConsoleEntry(level=m.level, text=m.text[:4000], location=_location_text(m.location))
                 for m in result.console],
        page_errors=[PageErrorEntry(message=e.message[:4000], stack=e.stack[:8000] or None, **_where(e.location))
                     for e in result.page_errors],
        failed_responses=[f"{r.url} ({r.status or r.error})" for r in result.failed_responses],
        blocked_requests=result.blocked_requests,
        build_warnings=[m.text[:2000] for m in result.build_warnings],
        aria_snapshot=result.aria_snapshot[:50_000], visible_text=result.visible_text[:50_000], blank=result.blank,
        timings_ms={name: int(value) for name, value in result.timings.model_dump().items()},
    )
    return Execution(
        status=result.status, passed=result.status == "passed", compiled=result.compiled,
        tests_passed=result.tests_passed, tests_total=result.tests_total, errors=_errors(result),
        tests=_outcomes(result), duration_ms=int(result.duration_ms), isolation=result.isolation or "process",
        backend="browser", ui=ui, stdout="\n".join(result.notes),
        screenshots=[Screenshot(at_ms=s.at_ms, png=s.png) for s in result.screenshots],
    )


def run(request: CaptureFeedbackInput) -> Execution:
    from roopik_rl_mcp.ui import capture_project, capture_ui

    viewport = (request.viewport.width, request.viewport.height)
    options = dict(ui_checks=request.ui_checks, viewport=viewport, screenshots_at_ms=request.screenshots_at_ms,
                   timeout_s=max(1.0, request.timeout_s))
    if request.project_dir:  # a Vite app: built with its own node_modules; `code` is kept for the judge
        result = capture_project(request.project_dir, **options)
    else:
        result = capture_ui(request.code, request.language, **options)
    return to_execution(result, viewport)
