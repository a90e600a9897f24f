"""Execution of untrusted code: Python against unit tests, in a limited child process."""

from roopik_rl_mcp.sandbox.models import ExecError, ExecutionResult, Status, TestOutcome
from roopik_rl_mcp.sandbox.python_runner import Limits, isolation_level, run_python

__all__ = ["ExecError", "ExecutionResult", "Limits", "Status", "TestOutcome", "isolation_level", "run_python"]
