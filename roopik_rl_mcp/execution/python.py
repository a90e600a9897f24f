"""Python against unit tests, in the hardened sandbox (see sandbox/)."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.execution.base import Execution
from roopik_rl_mcp.sandbox import run_python

if TYPE_CHECKING:
    from roopik_rl_mcp.schemas import CaptureFeedbackInput


def infer_entry_point(code: str, tests: str | None) -> str | None:
    """For `check(candidate)` tests without an entry point: the code's only top-level function, if unique."""
    if not tests or "def check(" not in tests:
        return None
    try:
        names = [n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    except SyntaxError:
        return None
    return names[0] if len(names) == 1 else None


def entry_point_for(request: CaptureFeedbackInput) -> str | None:
    entry_point = request.entry_point or infer_entry_point(request.code, request.tests)
    if request.tests and "def check(" in request.tests and not entry_point:
        raise UserError("entry_point", "required when tests define check(candidate) and the code has several functions")
    return entry_point


def run(request: CaptureFeedbackInput) -> Execution:
    entry_point = entry_point_for(request)
    result = run_python(request.code, request.tests, entry_point, request.timeout_s)
    return Execution(**result.model_dump(), compiled=result.status != "build_error", entry_point=entry_point,
                     backend="sandbox")
