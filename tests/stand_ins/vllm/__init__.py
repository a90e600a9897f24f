"""A stand-in for vLLM's offline API (LLM, SamplingParams, LoRARequest) for machines without a GPU.

It checks the glue, not vLLM: every engine start and generate() call is appended as JSON to the file in
FAKE_VLLM_LOG, the tokenizer is the model folder's real one, and the "generation" is scripted: with a
LoRA request the canonical HumanEval solution (plus a trailing `def`, which the stop sequences must cut),
without one a wrong body.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = 16
    seed: int | None = None
    stop: list[str] | None = None


def _log(record: dict) -> None:
    with open(os.environ["FAKE_VLLM_LOG"], "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")


class LLM:
    def __init__(self, model: str, **kwargs: Any) -> None:
        from transformers import AutoTokenizer

        from roopik_rl_mcp.evaluation.tasks import load_tasks

        self.model, self.kwargs = model, kwargs
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.solutions = {t.prompt: t.canonical_solution for t in load_tasks()}
        _log({"event": "engine", "model": model, **kwargs})

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, prompts: list[str], params: SamplingParams, lora_request: Any = None,
                 use_tqdm: bool = True) -> list[Any]:
        _log({"event": "generate", "n_prompts": len(prompts), "params": asdict(params),
              "lora": None if lora_request is None else vars(lora_request)})
        outputs = []
        for prompt in prompts:
            text = self.solutions[prompt] + "\n\ndef extra():\n    pass\n" if lora_request else "    return None\n"
            for stop in params.stop or []:  # vLLM leaves the stop string out of the text
                text = text.split(stop, 1)[0]
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            outputs.append(SimpleNamespace(outputs=[SimpleNamespace(text=text, token_ids=ids)
                                                    for _ in range(params.n)]))
        return outputs
