"""Completions from an OpenAI-compatible endpoint: API models and local servers (vLLM, llama.cpp, Ollama).

A model written `openai:<name>` in evaluate_checkpoint is generated here, in chat format, from
ROOPIK_GENERATOR_BASE_URL with ROOPIK_GENERATOR_API_KEY (or OPENAI_BASE_URL / OPENAI_API_KEY). The key is
read in the job process from its environment and never written to the job's config or result.
"""

from __future__ import annotations

import os
from typing import Any

PREFIX = "openai:"


def is_api_model(model: str | None) -> bool:
    return bool(model) and model.startswith(PREFIX)


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value and not value.startswith("${"):
            return value
    return None


class OpenAIGenerator:
    """`sample(prompt, n)` like the transformers Generator: n (answer, completion tokens) pairs."""

    prompt_format = "chat"

    def __init__(self, model: str, cfg: Any) -> None:
        import openai

        self.base_url = _env("ROOPIK_GENERATOR_BASE_URL", "OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.model = model.removeprefix(PREFIX)
        self.cfg = cfg
        self.client = openai.OpenAI(base_url=self.base_url, timeout=120, max_retries=3,
                                    api_key=_env("ROOPIK_GENERATOR_API_KEY", "OPENAI_API_KEY") or "not-needed")

    def sample(self, prompt: str, n: int) -> list[tuple[str, int]]:
        from roopik_rl_mcp.evaluation.prompting import chat_messages

        runs = n if self.cfg.temperature > 0 else 1
        out: list[tuple[str, int]] = []
        for _ in range(runs):
            response = self.client.chat.completions.create(
                model=self.model, messages=chat_messages(prompt), temperature=self.cfg.temperature,
                max_tokens=self.cfg.max_new_tokens, seed=self.cfg.seed,
                **({"top_p": self.cfg.top_p} if self.cfg.temperature > 0 else {}))
            text = (response.choices[0].message.content if response.choices else "") or ""
            tokens = getattr(getattr(response, "usage", None), "completion_tokens", 0) or 0
            out.append((text, tokens))
        return out if runs == n else out * n
