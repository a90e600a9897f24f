"""Execution of untrusted Python against unit tests, in a sandbox (see isolation.py and inside/)."""

from roopik_rl_mcp.sandbox.models import ExecError, ExecutionResult, Status, TestOutcome
from roopik_rl_mcp.sandbox.python_runner import BatchJob, Limits, isolation_level, run_batch, run_python

__all__ = ["BatchJob", "ExecError", "ExecutionResult", "Limits", "Status", "TestOutcome", "isolation_level",
           "run_batch", "run_python"]
