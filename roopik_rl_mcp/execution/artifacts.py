"""Record what the agent already captured (a screenshot, console and build errors) without running code.

Roopik's agent often has these from its own browser; re-rendering would cost time and could differ. The
screenshot must decode as a PNG (checked by artifacts.check_png when it is stored) and counts as blank
when nearly all its pixels are one colour, like a local capture.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import TYPE_CHECKING

from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.execution.base import Execution, Screenshot, UIObservation
from roopik_rl_mcp.sandbox.models import ExecError

if TYPE_CHECKING:
    from roopik_rl_mcp.schemas import CaptureFeedbackInput

ARTIFACT_FIELDS = ("screenshot_png_base64", "console_errors", "build_errors")


def given(request: CaptureFeedbackInput) -> bool:
    return any(getattr(request, name) is not None for name in ARTIFACT_FIELDS)


def _decode(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UserError("screenshot_png_base64", f"is not valid base64 ({exc})") from None


def record(request: CaptureFeedbackInput) -> Execution:
    if not given(request):
        raise UserError("backend", f"'artifacts' records what the agent captured: give at least one of "
                                   f"{', '.join(ARTIFACT_FIELDS)}")
    started = time.monotonic()
    png = _decode(request.screenshot_png_base64) if request.screenshot_png_base64 else None
    blank = None
    if png is not None:
        from roopik_rl_mcp.artifacts import check_png
        from roopik_rl_mcp.ui.blank import is_blank

        check_png(png, "screenshot_png_base64")
        blank = is_blank(png)
    build = [ExecError(kind="BuildError", message=m) for m in request.build_errors or []]
    runtime = [ExecError(kind="ConsoleError", message=m) for m in request.console_errors or []]
    if build:
        status = "build_error"
    elif runtime or blank:
        status = "error"
    else:
        status = "passed"
    errors = build + runtime
    if blank:
        errors.append(ExecError(kind="BlankPage", message="the screenshot is (nearly) all one colour"))
    return Execution(
        status=status, passed=status == "passed", compiled=not build, errors=errors, backend="artifacts",
        isolation="none (recorded, not run)", duration_ms=int((time.monotonic() - started) * 1000),
        ui=UIObservation(page_url=request.page_url, blank=blank),
        screenshots=[Screenshot(at_ms=0, png=png)] if png is not None else [],
    )
