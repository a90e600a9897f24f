"""Model references a client gives (base models, adapters), checked before any job starts.

A reference is the tiny built-in model, a Hugging Face model folder (config.json), a LoRA adapter folder
(adapter_config.json) whose base resolves in turn, or a hub id (`org/name`). Anything else (a system
directory, a stray file, a typo) is refused at once with what was found, instead of failing seconds later
inside a job. Only reads: nothing here writes to the path. No heavy imports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from roopik_rl_mcp.errors import UserError

TINY = "tiny"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
MAX_ADAPTER_DEPTH = 4
"""An adapter trained on an adapter trained on ...: deeper chains are refused (and cycles end)."""


def looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _read_json(path: Path, field: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(field, f"{path} is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise UserError(field, f"{path} does not hold a JSON object")
    return data


def _tiny_adapter(folder: Path) -> bool:
    """An adapter of the tiny model: its base is rebuilt on load if it was deleted (see trainers.common)."""
    summary = folder / "training_summary.json"
    try:
        return bool(summary.is_file() and json.loads(summary.read_text(encoding="utf-8")).get("base_model_is_tiny"))
    except (OSError, ValueError):
        return False


def check_model_reference(value: str | None, field: str, _depth: int = 0) -> str:
    """Returns the kind found ('tiny', 'hub', 'model', 'adapter'), or raises a UserError naming `field`."""
    if value is None or value == TINY:
        return "tiny"
    local = Path(value).expanduser()
    if not local.exists():
        if looks_like_path(value):
            raise UserError(field, f"model path {value!r} does not exist")
        if not HUB_ID.match(value) or ".." in value:
            raise UserError(field, f"{value!r} is neither an existing path nor a hub id such as 'Qwen/Qwen2.5-Coder-0.5B'")
        return "hub"
    if local.is_file():
        if local.suffix.lower() == ".gguf":
            raise UserError(field, f"{local} is a GGUF file; GGUF models are not supported yet: convert it to a "
                                   "Hugging Face model folder (config.json + weights) and pass that folder")
        raise UserError(field, f"{local} is a file; give a model folder (config.json), a LoRA adapter folder "
                               "(adapter_config.json) or a hub id")
    if not local.is_dir():
        raise UserError(field, f"{local} is not a folder")
    if (local / "adapter_config.json").is_file():
        if _depth >= MAX_ADAPTER_DEPTH:
            raise UserError(field, f"{local}: adapter chain deeper than {MAX_ADAPTER_DEPTH} (or a cycle)")
        base = _read_json(local / "adapter_config.json", field).get("base_model_name_or_path")
        if not isinstance(base, str) or not base:
            raise UserError(field, f"{local}/adapter_config.json names no base_model_name_or_path")
        if not (_tiny_adapter(local) and not Path(base).exists()):
            check_model_reference(base, f"{field} (base_model_name_or_path of the adapter {local})", _depth + 1)
        return "adapter"
    if (local / "config.json").is_file():
        _read_json(local / "config.json", field)
        return "model"
    if any(local.glob("*.gguf")):
        raise UserError(field, f"{local} holds a GGUF file; GGUF models are not supported yet: convert it to a "
                               "Hugging Face model folder (config.json + weights) and pass that folder")
    raise UserError(field, f"{local} is a folder but not a model: it has no config.json (a Hugging Face model "
                           "folder) and no adapter_config.json (a LoRA adapter)")
