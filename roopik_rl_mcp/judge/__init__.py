"""judge_output: score an episode (offline or with an LLM) and turn it into one reward."""

from roopik_rl_mcp.judge.service import judge_output

__all__ = ["judge_output"]
