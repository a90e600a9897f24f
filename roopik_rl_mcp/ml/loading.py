"""Load (model, tokenizer) from any model reference: the tiny model, a hub id, a model folder, a GGUF file
or a folder holding one, or a PEFT adapter folder on its base; and several adapters on one loaded base.

Every reference becomes a model folder or hub id first (`resolve_base`): a GGUF file through its cached
conversion (`roopik_rl_mcp.ml.gguf`), so the rest of the loading path is the plain transformers one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from roopik_rl_mcp.ml import Reporter
from roopik_rl_mcp.ml.gguf import convert_gguf, gguf_file_of
from roopik_rl_mcp.ml.tiny import build_tiny_model, default_tiny_path, is_tiny
from roopik_rl_mcp.model_refs import looks_like_path


def pick_device() -> tuple[str, Any]:
    """CUDA with bf16 where the GPU supports it, else CPU with float32 (bf16 on CPU is slow and lossy)."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return "cpu", torch.float32


def resolve_base(
    name_or_path: str | None, tiny_path: str | os.PathLike[str] | None = None, progress: Reporter | None = None
) -> str:
    """Map "tiny"/None to the (built) tiny model path, a GGUF to its converted folder, local paths to absolute
    ones; leave hub ids alone."""
    if is_tiny(name_or_path):
        return str(build_tiny_model(tiny_path or default_tiny_path(), progress=progress))
    assert name_or_path is not None
    gguf_file = gguf_file_of(name_or_path)
    if gguf_file is not None:
        return str(convert_gguf(gguf_file, progress))
    local = Path(name_or_path).expanduser()
    if local.exists():
        return str(local.resolve())
    if looks_like_path(name_or_path):  # fail here with the path in the message, not deep inside a hub lookup
        raise FileNotFoundError(f"base model path does not exist: {name_or_path}")
    return name_or_path  # a hub id such as "Qwen/Qwen2.5-0.5B"


def adapter_dir_of(name_or_path: str | None) -> Path | None:
    """The folder when the reference is a PEFT adapter (it has adapter_config.json)."""
    if is_tiny(name_or_path):
        return None
    folder = Path(str(name_or_path)).expanduser()
    return folder.resolve() if (folder / "adapter_config.json").is_file() else None


def adapter_base(adapter_dir: Path, tiny_path: str | os.PathLike[str] | None = None,
                 progress: Reporter | None = None) -> str:
    """The resolved base of an adapter; a deleted tiny base is rebuilt where the adapter expects it."""
    with open(adapter_dir / "adapter_config.json", encoding="utf-8") as f:
        base_name = json.load(f).get("base_model_name_or_path")
    summary = adapter_dir / "training_summary.json"
    if base_name and not is_tiny(base_name) and not Path(base_name).exists() and summary.is_file():
        # A tiny base is deterministic, so a deleted one can be rebuilt where the adapter expects it.
        with open(summary, encoding="utf-8") as f:
            if json.load(f).get("base_model_is_tiny"):
                build_tiny_model(base_name, progress=progress)
    return resolve_base(base_name, tiny_path, progress)


def base_and_adapter(name_or_path: str | None, tiny_path: str | os.PathLike[str] | None = None,
                     progress: Reporter | None = None) -> tuple[str, Path | None]:
    """The resolved base folder or hub id, and the adapter folder when the reference is an adapter."""
    adapter_dir = adapter_dir_of(name_or_path)
    base = adapter_base(adapter_dir, tiny_path, progress) if adapter_dir else resolve_base(name_or_path, tiny_path,
                                                                                            progress)
    return base, adapter_dir


def load_tokenizer(source: str) -> Any:
    """The tokenizer with a pad token (batched generation and training both pad)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(base: str, device: str | None = None, *, dtype: Any = None, quantization_config: Any = None,
                    auto_class: Any = None, **kwargs: Any) -> Any:
    """A model (default: causal LM) from a resolved folder or hub id, in the device's dtype (float32 on CPU)
    unless `dtype` is given; with `quantization_config` (4-bit) it is placed by device_map, not moved."""
    import torch
    import transformers
    from packaging.version import Version
    from transformers import AutoModelForCausalLM

    default_device, default_dtype = pick_device()
    device = device or default_device
    if dtype is None:
        dtype = torch.float32 if device == "cpu" else default_dtype
    dtype_kw = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"  # renamed in 4.56
    auto_class = auto_class or AutoModelForCausalLM
    if quantization_config is not None:  # bitsandbytes weights cannot be .to()-ed: load them in place
        return auto_class.from_pretrained(base, **{dtype_kw: dtype}, quantization_config=quantization_config,
                                          device_map={"": device}, **kwargs)
    model = auto_class.from_pretrained(base, **{dtype_kw: dtype}, **kwargs)
    return model.to(device)


def load_model_and_tokenizer(
    name_or_path: str | None,
    *,
    tiny_path: str | os.PathLike[str] | None = None,
    device: str | None = None,
    is_trainable: bool = False,
    progress: Reporter | None = None,
    dtype: Any = None,
    quantization_config: Any = None,
    prepare_base: Callable[[Any], Any] | None = None,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) from "tiny", a hub id, a local model dir, a GGUF, or a LoRA adapter dir.

    An adapter dir is recognised by `adapter_config.json`: its `base_model_name_or_path` is loaded
    first ("tiny" resolves to `tiny_path`), then the adapter on top with `PeftModel.from_pretrained`.
    `prepare_base` (e.g. peft's prepare_model_for_kbit_training for a 4-bit base) runs on the base before
    any adapter goes on.
    """
    base, adapter_dir = base_and_adapter(name_or_path, tiny_path, progress)
    # Tokenizer: the adapter dir carries a copy (saved by the trainer); fall back to the base's.
    tok_source = str(adapter_dir) if adapter_dir and (adapter_dir / "tokenizer_config.json").is_file() else base
    tokenizer = load_tokenizer(tok_source)
    model = load_base_model(base, device, dtype=dtype, quantization_config=quantization_config)
    if prepare_base is not None:
        model = prepare_base(model)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if not is_trainable:
        model.eval()
    return model, tokenizer


def attach_adapters(model: Any, adapters: dict[str, str]) -> Any:
    """Load several adapters onto one loaded base (one load, then `set_adapter(name)` per checkpoint).

    The base weights are shared, so each extra adapter costs its own small weights only; with
    `with peft_model.disable_adapter():` the same object is the plain base again."""
    from peft import PeftModel

    names = list(adapters)
    peft_model = PeftModel.from_pretrained(model, adapters[names[0]], adapter_name=names[0], is_trainable=False)
    for name in names[1:]:
        peft_model.load_adapter(adapters[name], adapter_name=name, is_trainable=False)
    peft_model.eval()
    return peft_model
