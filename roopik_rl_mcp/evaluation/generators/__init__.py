"""Where completions come from: a transformers model (base or adapter, several adapters on one loaded base)
or an OpenAI-compatible endpoint. Every generator answers the same call, so the runner and the scoring
never know which one they hold.

Only the runner subprocess imports the backends (`transformers_backend` pulls in torch); this module and
`openai_backend`'s reference helpers stay light for the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Sample = tuple[str, int]
"""One raw answer and the number of tokens generated for it."""


@dataclass(frozen=True)
class GenerationSettings:
    """The same for every model of one evaluation, so their numbers compare."""

    temperature: float = 0.0
    top_p: float = 0.95
    max_new_tokens: int = 256
    seed: int = 0
    batch_size: int = 8
    prompt_format: str = "auto"

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


class Generator(Protocol):
    """`generate(prompts, n)`: for each prompt, n samples (identical ones under greedy decoding)."""

    label: str
    backend: str
    prompt_format: str

    def generate(self, prompts: list[str], n: int) -> list[list[Sample]]: ...
