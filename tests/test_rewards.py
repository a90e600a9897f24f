"""roopik_rl_mcp.rewards as TRL reward functions: execution reward and the offline judge's reward."""

from __future__ import annotations

from roopik_rl_mcp.evaluation.tasks import load_tasks
from roopik_rl_mcp.rewards import judge_reward


def test_judge_reward_ranks_correct_above_wrong_above_broken_and_matches_judge_output_formula():
    task = load_tasks(limit=1)[0]
    answers = [task.canonical_solution, "    return None\n", "    x = (\n"]
    rewards = judge_reward([task.prompt] * 3, answers, [task.test] * 3, [task.entry_point] * 3)
    assert rewards[0] == 1.0 and rewards[0] > rewards[1] > rewards[2] == 0.0
    # A wrong answer keeps what it earned by compiling and reading well, but none of the tests' or
    # functionality's share (0.2 + 0.2 of the default weights).
    assert rewards[1] <= 0.6
    conversational = judge_reward([task.prompt], [[{"role": "assistant", "content": answers[0]}]], [task.test],
                                  [task.entry_point])
    assert conversational == [1.0]
