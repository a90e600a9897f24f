"""Executors by kind of code, behind one call: `execute(request, language) -> Execution`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from roopik_rl_mcp.execution import artifacts, browser, python, roopik
from roopik_rl_mcp.languages import UI_LANGUAGES
from roopik_rl_mcp.execution.base import Execution, UIObservation, register, select

if TYPE_CHECKING:
    from roopik_rl_mcp.schemas import CaptureFeedbackInput



def _artifacts(request: CaptureFeedbackInput, language: str) -> bool:
    return request.backend == "artifacts" or artifacts.given(request)


def _python(request: CaptureFeedbackInput, language: str) -> bool:
    return language == "python" and request.backend in ("auto", "sandbox")


def _browser(request: CaptureFeedbackInput, language: str) -> bool:
    return language in UI_LANGUAGES and request.backend in ("auto", "browser")


register("roopik", "backend roopik (the Roopik IDE's browser)", lambda request, language: request.backend == "roopik",
         roopik.run)
register("artifacts", "screenshot_png_base64, console_errors or build_errors given", _artifacts, artifacts.record)
register("sandbox", "language python", _python, python.run)
register("browser", "UI code (tsx/jsx/ts/js/html) in the local headless Chromium", _browser, browser.run)


def execute(request: CaptureFeedbackInput, language: str) -> Execution:
    """Run the request with the first executor that handles it (a UserError naming `language` if none does).

    The executor sees the request with `language` filled in (given or inferred)."""
    return select(request, language).executor(request.model_copy(update={"language": language}))


__all__ = ["Execution", "UIObservation", "execute"]
