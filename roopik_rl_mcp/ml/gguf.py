"""GGUF files (llama.cpp, Ollama, LM Studio) as regular model folders: dequantized once, cached by hash.

transformers loads a GGUF through its GGUF quantizer and dequantizes every tensor on each load, and a
model loaded that way cannot be saved or trained with LoRA as is. So a GGUF file is converted once into a
plain model folder under `$ROOPIK_RL_HOME/models/gguf/<sha256 prefix>/` (the same file under another
name or path is the same folder), and evaluation and training both start from that folder. The
conversion is its own step, reported stage by stage through the job's progress messages; a second job
on the same file reuses the folder, and concurrent jobs wait for one conversion (a file lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from roopik_rl_mcp.ml import Reporter
from roopik_rl_mcp.ml.files import file_lock, save_json
from roopik_rl_mcp.model_refs import GGUF_SUFFIX, gguf_in_folder, inspect_gguf

SOURCE_FILE = "gguf_source.json"
"""Written into each converted folder: which file it came from, its hash, types and timings."""
HASH_CHUNK = 8 << 20
FLOAT_TYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def cache_root() -> Path:
    """Converted GGUF models live with the other models of the data dir."""
    home = Path(os.environ.get("ROOPIK_RL_HOME") or Path.home() / ".roopik-rl").expanduser()
    return home / "models" / "gguf"


def gguf_file_of(reference: str | os.PathLike[str]) -> Path | None:
    """The GGUF file a local reference names (the file, or the only .gguf in a folder without config.json)."""
    path = Path(reference).expanduser()
    if path.is_file() and path.suffix.lower() == GGUF_SUFFIX:
        return path.resolve()
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        files = gguf_in_folder(path)
        if len(files) == 1:
            return files[0].resolve()
    return None


def file_sha256(path: Path, reporter: Reporter | None = None) -> str:
    """SHA-256 of the file, reporting every quarter of a large file (a 4 GB model takes a few seconds)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    done, next_report = 0, size // 4
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if reporter and size > 256 << 20 and done >= next_report and done < size:
                reporter.message(f"GGUF: hashing {path.name}: {done * 100 // size}%")
                next_report += size // 4
    return digest.hexdigest()


def _is_converted(folder: Path) -> bool:
    return (folder / SOURCE_FILE).is_file() and (folder / "config.json").is_file()


def _save_dtype(tensor_types: dict[str, int]) -> str:
    """Keep a float file's precision; dequantized blocks (Q4_K, Q8_0, ...) fit bfloat16 without loss that
    matters (its error is far below the quantization's) at half float32's disk size."""
    floats = {FLOAT_TYPES[t] for t in tensor_types if t in FLOAT_TYPES and t != "F32"}
    if any(t not in FLOAT_TYPES for t in tensor_types):
        return "bfloat16"
    return floats.pop() if len(floats) == 1 else "float32"


def convert_gguf(gguf_file: str | os.PathLike[str], reporter: Reporter | None = None) -> Path:
    """The cached model folder for `gguf_file`, converting it first if this file was never converted."""
    source = Path(gguf_file).expanduser().resolve()
    info = inspect_gguf(source)  # a bad file fails here with the reason, before anything is written
    say = reporter.message if reporter else (lambda text: None)
    size_mb = source.stat().st_size / 1e6
    say(f"GGUF 1/4: hashing {source.name} ({size_mb:.1f} MB, {info['architecture']}, {info['n_tensors']} tensors "
        f"{info['tensor_types']})")
    sha = file_sha256(source, reporter)
    target = cache_root() / sha[:16]
    if _is_converted(target):
        say(f"GGUF: {source.name} was converted before (sha256 {sha[:16]}); using {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.with_name(target.name + ".lock")):
        if _is_converted(target):
            say(f"GGUF: another job converted {source.name} meanwhile; using {target}")
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-{uuid.uuid4().hex[:8]}-", dir=target.parent))
        tmp.chmod(0o755)
        try:
            _convert_into(source, sha, info, tmp, say)
            if target.exists():  # a half-written folder from a killed conversion (no SOURCE_FILE)
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    say(f"GGUF 4/4: {source.name} is now the model folder {target} (cached: later jobs skip the conversion)")
    return target


def _convert_into(source: Path, sha: str, info: dict, out: Path, say) -> None:  # noqa: ANN001 - say: str -> None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.time()
    dtype_name = _save_dtype(info["tensor_types"])
    say(f"GGUF 2/4: reading and dequantizing {info['n_tensors']} tensors through transformers (to {dtype_name})")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=str(source),
                                                     dtype=getattr(torch, dtype_name))
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=str(source))
    except Exception as exc:
        raise RuntimeError(f"transformers could not load the GGUF file {source} (architecture "
                           f"{info['architecture']!r}): {type(exc).__name__}: {exc}") from exc
    loaded_s = time.time() - started
    say(f"GGUF 3/4: saving a regular model folder ({sum(p.numel() for p in model.parameters()):,} parameters, "
        f"read in {loaded_s:.1f}s)")
    # A GGUF-loaded model carries its quantizer and a quantization_config; save_pretrained refuses such a
    # model, and a folder saved with them would be loaded as GGUF again. The weights are plain tensors now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    if "quantization_config" in config:  # never a GGUF folder again: refuse to cache one that would be
        raise RuntimeError(f"converted config of {source} still names a quantization_config")
    save_json(out / SOURCE_FILE, {
        "gguf_file": str(source), "sha256": sha, "size_bytes": source.stat().st_size, **info,
        "saved_dtype": dtype_name, "load_seconds": round(loaded_s, 2),
        "convert_seconds": round(time.time() - started, 2),
    })
