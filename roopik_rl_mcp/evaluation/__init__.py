"""pass@k evaluation of a base model or LoRA adapter on HumanEval-style tasks.

Kept import-light on purpose: the MCP server imports this package to validate requests and list tasks,
while generation (torch/transformers) only happens in the `runner` subprocess.
"""

from roopik_rl_mcp.evaluation.metrics import aggregate_pass_at_k, pass_at_k
from roopik_rl_mcp.evaluation.tasks import Task, load_tasks

__all__ = ["Task", "aggregate_pass_at_k", "load_tasks", "pass_at_k"]
