"""Completions from vLLM in-process: the base loaded once, LoRA adapters applied per request.

On a GPU vLLM generates HumanEval's 164 tasks in seconds where transformers' generate() takes minutes, and
it serves adapters of one base without reloading (`enable_lora`, one `LoRARequest` per adapter). Used when
the evaluation asks for `generation_backend="vllm"`, or "auto" finds vLLM installed and a CUDA device. The
prompts, stop sequences and answer handling are the transformers backend's, so the two score alike.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roopik_rl_mcp.evaluation.generators import GenerationSettings, Sample
from roopik_rl_mcp.evaluation.prompting import STOP_SEQUENCES, chat_messages, resolve_format

DEFAULT_MAX_LORA_RANK = 16


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def use_vllm(requested: str) -> bool:
    """"vllm": always (vLLM reports what it lacks); "auto": when vLLM is installed and a CUDA device is there."""
    if requested == "vllm":
        return True
    if requested != "auto" or not vllm_installed():
        return False
    import torch

    return torch.cuda.is_available()


def _lora_rank(adapter_dir: str) -> int:
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    return int(config.get("r") or DEFAULT_MAX_LORA_RANK)


@dataclass
class VLLMBase:
    """One vLLM engine on a base model, with the adapters it may apply (name -> (request id, folder))."""

    llm: Any
    base: str
    adapters: dict[str, tuple[int, str]] = field(default_factory=dict)

    def close(self) -> None:
        import gc

        self.llm = None
        gc.collect()


def load_vllm(base: str, adapters: dict[str, str], seed: int, max_new_tokens: int) -> VLLMBase:
    """Start the engine once for the base and every adapter of the group ({name: folder})."""
    from vllm import LLM

    kwargs: dict[str, Any] = {"model": base, "seed": seed, "trust_remote_code": False}
    if adapters:
        ranks = [_lora_rank(folder) for folder in adapters.values()]
        # vLLM accepts the ranks 8, 16, 32, 64, ...: the smallest that holds every adapter.
        kwargs.update(enable_lora=True, max_loras=len(adapters),
                      max_lora_rank=next(r for r in (8, 16, 32, 64, 128, 256, 512) if r >= max(ranks)))
    llm = LLM(**kwargs)
    return VLLMBase(llm, base, {name: (i + 1, folder) for i, (name, folder) in enumerate(adapters.items())})


class VLLMGenerator:
    """One checkpoint of a VLLMBase: the base (adapter None) or one of its adapters."""

    backend = "vllm"

    def __init__(self, label: str, loaded: VLLMBase, adapter: str | None, settings: GenerationSettings) -> None:
        self.label, self.loaded, self.adapter, self.settings = label, loaded, adapter, settings
        self.tokenizer = loaded.llm.get_tokenizer()
        self.prompt_format = resolve_format(settings.prompt_format, bool(getattr(self.tokenizer, "chat_template", None)))

    def _prompt_text(self, prompt: str) -> str:
        if self.prompt_format == "chat":
            return self.tokenizer.apply_chat_template(chat_messages(prompt), add_generation_prompt=True, tokenize=False)
        return prompt

    def _lora_request(self) -> Any:
        if self.adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        request_id, folder = self.loaded.adapters[self.adapter]
        return LoRARequest(self.adapter, request_id, folder)

    def generate(self, prompts: list[str], n: int) -> list[list[Sample]]:
        """n samples per prompt in one call: vLLM batches and schedules them itself."""
        from vllm import SamplingParams

        s = self.settings
        runs = 1 if s.greedy else n
        params = SamplingParams(
            n=runs, temperature=0.0 if s.greedy else s.temperature, top_p=1.0 if s.greedy else s.top_p,
            max_tokens=s.max_new_tokens, seed=s.seed,
            stop=list(STOP_SEQUENCES) if self.prompt_format == "completion" else None)
        outputs = self.loaded.llm.generate([self._prompt_text(p) for p in prompts], params,
                                           lora_request=self._lora_request(), use_tqdm=False)
        samples = [[(choice.text, len(choice.token_ids)) for choice in output.outputs] for output in outputs]
        return [row * n if runs == 1 else row for row in samples]
