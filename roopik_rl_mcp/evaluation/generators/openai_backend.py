"""Completions from an OpenAI-compatible endpoint: API models and local servers (vLLM, llama.cpp, Ollama).

A model written `openai:<name>` (or just `openai`, meaning ROOPIK_GENERATOR_MODEL) is generated here, in
chat format, from ROOPIK_GENERATOR_BASE_URL with ROOPIK_GENERATOR_API_KEY (or OPENAI_BASE_URL /
OPENAI_API_KEY). The key is read in the job process from its environment and never written to the job's
config, result or samples. The reference helpers at the top import nothing heavy: the server uses them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from roopik_rl_mcp.evaluation.generators import GenerationSettings, Sample

PREFIX = "openai:"
BARE = "openai"
MODEL_ENV = "ROOPIK_GENERATOR_MODEL"
BASE_URL_ENV = ("ROOPIK_GENERATOR_BASE_URL", "OPENAI_BASE_URL")
API_KEY_ENV = ("ROOPIK_GENERATOR_API_KEY", "OPENAI_API_KEY")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
CONCURRENCY = 4
"""Requests in flight at once: an endpoint answers several prompts in the time of one."""


def is_api_model(model: str | None) -> bool:
    return bool(model) and (model == BARE or model.startswith(PREFIX))


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value and not value.startswith("${"):  # an unexpanded placeholder from a client config
            return value
    return None


def api_model_name(model: str) -> str | None:
    """The endpoint's model name: after `openai:`, else ROOPIK_GENERATOR_MODEL; None when neither says."""
    name = model.removeprefix(PREFIX) if model.startswith(PREFIX) else ""
    return name or _env(MODEL_ENV)


def base_url() -> str:
    return _env(*BASE_URL_ENV) or DEFAULT_BASE_URL


class OpenAIGenerator:
    """Chat completions for each prompt (n per prompt, one request each), a few requests at a time."""

    backend = "openai"
    prompt_format = "chat"

    def __init__(self, label: str, model: str, settings: GenerationSettings) -> None:
        import openai

        name = api_model_name(model)
        if not name:
            raise ValueError(f"{model!r} names no API model: write 'openai:<name>' or set {MODEL_ENV}")
        self.label, self.model, self.settings, self.base_url = label, name, settings, base_url()
        self.client = openai.OpenAI(base_url=self.base_url, timeout=120, max_retries=3,
                                    api_key=_env(*API_KEY_ENV) or "not-needed")

    def _one(self, prompt: str) -> Sample:
        from roopik_rl_mcp.evaluation.prompting import chat_messages

        s = self.settings
        response = self.client.chat.completions.create(
            model=self.model, messages=chat_messages(prompt), temperature=s.temperature,
            max_tokens=s.max_new_tokens, seed=s.seed, **({} if s.greedy else {"top_p": s.top_p}))
        text = (response.choices[0].message.content if response.choices else "") or ""
        tokens = getattr(getattr(response, "usage", None), "completion_tokens", 0) or 0
        return text, int(tokens)

    def generate(self, prompts: list[str], n: int) -> list[list[Sample]]:
        runs = 1 if self.settings.greedy else n  # greedy: one request, repeated
        jobs = [prompt for prompt in prompts for _ in range(runs)]
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            answers = list(pool.map(self._one, jobs))
        out = [answers[i * runs:(i + 1) * runs] for i in range(len(prompts))]
        return [samples * n if runs == 1 else samples for samples in out]
