"""Executors by kind of code, behind one call: `execute(request, language) -> Execution`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from roopik_rl_mcp.execution import python
from roopik_rl_mcp.execution.base import Execution, UIObservation, register, registrations, select

if TYPE_CHECKING:
    from roopik_rl_mcp.schemas import CaptureFeedbackInput

register("sandbox", lambda request, language: language == "python", python.run)


def ui_supported() -> bool:
    """Whether an executor for UI code is registered (the browser one, once installed)."""
    return any(r.name != "sandbox" for r in registrations())


def execute(request: CaptureFeedbackInput, language: str) -> Execution:
    """Run the request with the first executor that handles it (LookupError when none does)."""
    return select(request, language).executor(request)


__all__ = ["Execution", "UIObservation", "execute", "ui_supported"]
