"""One seam for running code, whatever its kind: an executor per kind, one result model.

capture_feedback does not know how Python is sandboxed or how a page is rendered: it asks the registry
for the executor that handles the request (by `language`, `backend` and which fields were given) and
stores the `Execution` it returns. Adding a kind of code is one module with an executor and one
`register` line in `execution/__init__.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, Field

from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.sandbox.models import ExecutionResult

if TYPE_CHECKING:
    from roopik_rl_mcp.schemas import CaptureFeedbackInput


class ConsoleEntry(BaseModel):
    level: str = Field(description="log, info, warning, error, debug.")
    text: str
    location: str | None = Field(None, description="file:line:column where the message came from, when known.")


class PageErrorEntry(BaseModel):
    message: str
    stack: str | None = None
    file: str | None = Field(None, description="The component's file when the error maps back to its source.")
    line: int | None = None
    column: int | None = None


class Screenshot(BaseModel):
    at_ms: int = Field(description="Milliseconds after the page settled when it was taken.")
    png: bytes


class UIObservation(BaseModel):
    """What the browser saw, beyond the verdict: what the judge and the reader of an episode want."""

    page_url: str | None = None
    viewport: tuple[int, int] | None = None
    console: list[ConsoleEntry] = Field(default_factory=list)
    page_errors: list[PageErrorEntry] = Field(default_factory=list)
    failed_responses: list[str] = Field(default_factory=list, description="Responses that failed or were >= 400.")
    blocked_requests: list[str] = Field(default_factory=list, description="Requests the sandbox refused.")
    build_warnings: list[str] = Field(default_factory=list)
    aria_snapshot: str | None = None
    visible_text: str | None = None
    blank: bool | None = Field(None, description="True when the page rendered (nearly) nothing.")
    timings_ms: dict[str, int] = Field(default_factory=dict, description="build, tailwind, render, ... in ms.")


class Execution(ExecutionResult):
    """ExecutionResult plus what only some kinds produce (UI observations, screenshots)."""

    compiled: bool = True
    entry_point: str | None = Field(None, description="Python: the function check(candidate) received.")
    backend: str = Field("sandbox", description="Which executor produced this: sandbox, browser, roopik, artifacts.")
    ui: UIObservation | None = None
    screenshots: list[Screenshot] = Field(default_factory=list)


class Executor(Protocol):
    """Runs one capture request; never raises for a fault of the code (that is the verdict)."""

    def __call__(self, request: CaptureFeedbackInput) -> Execution: ...


@dataclass(frozen=True)
class Registration:
    name: str
    describe: str
    handles: Callable[[CaptureFeedbackInput, str], bool]  # (request, language) -> bool
    executor: Executor


_REGISTRY: list[Registration] = []


def register(name: str, describe: str, handles: Callable[[CaptureFeedbackInput, str], bool],
             executor: Executor) -> None:
    """Add an executor; the first registration whose `handles` accepts a request runs it."""
    _REGISTRY.append(Registration(name, describe, handles, executor))


def registrations() -> list[Registration]:
    return list(_REGISTRY)


def select(request: CaptureFeedbackInput, language: str) -> Registration:
    for registration in _REGISTRY:
        if registration.handles(request, language):
            return registration
    how = "given" if request.language else "inferred from the code; pass `language` if the guess is wrong"
    raise UserError("language", f"{language!r} ({how}) with backend {request.backend!r} cannot be run here: "
                                f"{_what_runs()}; nothing was stored")


def _what_runs() -> str:
    return ", ".join(f"{r.name} ({r.describe})" for r in _REGISTRY)
