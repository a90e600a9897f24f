"""Execution rewards for RL: run each completion against its task's tests in the hardened sandbox.

One importable function, usable as a TRL `reward_funcs` entry in your own scripts as in ours
(trainers/grpo.py). TRL passes the dataset's other columns as keyword lists, so a dataset with `test` and
`entry_point` columns (HumanEval's) is all it needs:

    from roopik_rl_mcp.rewards import sandbox_reward
    GRPOTrainer(model, reward_funcs=[sandbox_reward], train_dataset=humaneval_like, ...)

reward = share of the task's tests passed - length_penalty * len(completion) / 100 (the length penalty of
the REINFORCE/PPO study in the seeds, with length in characters), so a correct short answer scores
highest. Completions run through one sandbox batch (a warm fork server, a process per test).

`judge_reward` adds the offline judge's view (execution plus code quality and prompt match, 0-1), for a
weighted second reward beside the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")


def _text(completion: Any) -> str:
    """A completion as TRL gives it: a string, or a conversational list of messages."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def _truncated(text: str) -> str:
    cut = min((i for i in (text.find(s) for s in STOP_SEQUENCES) if i != -1), default=len(text))
    return text[:cut]


def _executed(prompts: Sequence[Any], completions: Sequence[Any], test: Sequence[str], entry_point: Sequence[str],
              timeout_s: float) -> tuple[list[str], list[str], list[Any]]:
    """(completion texts cut at the stops, whole programs, sandbox results), one sandbox batch for all."""
    from roopik_rl_mcp.sandbox import BatchJob, run_batch

    texts = [_truncated(_text(c)) for c in completions]
    programs = [_text(p) + t for p, t in zip(prompts, texts)]
    results = run_batch([BatchJob(program, tests, entry, timeout_s)
                         for program, tests, entry in zip(programs, test, entry_point)])
    return texts, programs, results


def sandbox_reward(prompts: Sequence[Any], completions: Sequence[Any], test: Sequence[str],
                   entry_point: Sequence[str], length_penalty: float = 0.0, timeout_s: float = 5.0,
                   **_: Any) -> list[float]:
    """One reward per completion: tests passed (0-1, partial credit) minus the length penalty."""
    texts, _, results = _executed(prompts, completions, test, entry_point, timeout_s)
    rewards = []
    for text, result in zip(texts, results):
        share = result.tests_passed / result.tests_total if result.tests_total else float(result.passed)
        rewards.append(round(share - length_penalty * len(text) / 100, 6))
    return rewards


def judge_reward(prompts: Sequence[Any], completions: Sequence[Any], test: Sequence[str],
                 entry_point: Sequence[str], timeout_s: float = 5.0, **_: Any) -> list[float]:
    """The offline judge's reward (0-1) per completion: the same execution signals and rubric (quality from
    pyflakes and complexity, prompt match) that judge_output uses, so RL can favour readable code too.

    Deterministic and local; give it a weight beside sandbox_reward (TRL's `reward_weights`)."""
    from roopik_rl_mcp.judge import offline
    from roopik_rl_mcp.judge.reward import combine

    _, programs, results = _executed(prompts, completions, test, entry_point, timeout_s)
    rewards = []
    for prompt, program, tests, entry, result in zip(prompts, programs, test, entry_point, results):
        episode = {"task": _text(prompt), "code": program, "test_code": tests, "entry_point": entry,
                   "language": "python", "status": str(getattr(result.status, "value", result.status)),
                   "tests_total": result.tests_total, "tests_passed": result.tests_passed}
        scores, _ = offline.judge(episode)
        rewards.append(combine(episode, scores)[0])
    return rewards
