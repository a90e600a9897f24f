"""Model references a client gives (base models, adapters), checked before any job starts.

A reference is the tiny built-in model, a Hugging Face model folder (config.json), a GGUF file (or a folder
holding exactly one), a LoRA adapter folder (adapter_config.json) whose base resolves in turn, or a hub id
(`org/name`). Anything else (a system directory, a stray file, a typo, a GGUF that does not parse) is
refused at once with what was found, instead of failing seconds later inside a job. Only reads: nothing
here writes to the path. No heavy imports at module level: the `gguf` package (numpy) is imported only
when a GGUF file is checked.
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


GGUF_SUFFIX = ".gguf"


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


def gguf_in_folder(folder: Path) -> list[Path]:
    """The GGUF files directly in `folder`, sorted (a model folder with config.json is not a GGUF folder)."""
    return sorted(p for p in folder.glob("*") if p.suffix.lower() == GGUF_SUFFIX and p.is_file())


def inspect_gguf(path: Path) -> dict:
    """Architecture, name, tensor count and tensor types of a GGUF file, read with the `gguf` package.

    Raises ValueError when the file does not parse or its tensor data runs past the end of the file (a
    truncated download), so a bad file is refused before a job starts rather than inside one."""
    try:
        import gguf
    except ImportError as exc:  # a declared dependency; say how to fix a broken environment
        raise ValueError("reading GGUF files needs the `gguf` package: pip install gguf") from exc
    try:
        reader = gguf.GGUFReader(str(path))
        fields = {key: reader.fields[key].contents() for key in ("general.architecture", "general.name")
                  if key in reader.fields}
        tensors = list(reader.tensors)
        end = max((int(t.data_offset) + int(t.n_bytes) for t in tensors), default=0)
    except Exception as exc:  # noqa: BLE001 - the reader raises whatever numpy hits on a bad file
        raise ValueError(f"{path} does not parse as a GGUF file ({type(exc).__name__}: {exc})") from None
    if not tensors:
        raise ValueError(f"{path} is a GGUF file without tensors (a vocabulary-only file?)")
    if end > path.stat().st_size:
        raise ValueError(f"{path} is truncated: its tensors need {end} bytes, the file has {path.stat().st_size}")
    if not isinstance(fields.get("general.architecture"), str):
        raise ValueError(f"{path} is a GGUF file without general.architecture")
    types: dict[str, int] = {}
    for tensor in tensors:
        types[tensor.tensor_type.name] = types.get(tensor.tensor_type.name, 0) + 1
    return {"architecture": fields["general.architecture"], "name": fields.get("general.name"),
            "n_tensors": len(tensors), "tensor_types": types}


def _check_gguf(path: Path, field: str) -> str:
    try:
        inspect_gguf(path)
    except ValueError as exc:
        raise UserError(field, str(exc)) from None
    return "gguf"


def check_model_reference(value: str | None, field: str, _depth: int = 0) -> str:
    """Returns the kind found ('tiny', 'hub', 'model', 'gguf', 'adapter'), or raises a UserError naming `field`."""
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
        if local.suffix.lower() == GGUF_SUFFIX:
            return _check_gguf(local, field)
        raise UserError(field, f"{local} is a file; give a model folder (config.json), a GGUF file, a LoRA adapter "
                               "folder (adapter_config.json) or a hub id")
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
    if any((local / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")):
        raise UserError(field, f"{local} holds adapter weights but no adapter_config.json: PEFT needs that file "
                               "(with base_model_name_or_path) to know the adapter's base and shape")
    ggufs = gguf_in_folder(local)
    if len(ggufs) == 1:
        return _check_gguf(ggufs[0], field)
    if ggufs:
        raise UserError(field, f"{local} holds {len(ggufs)} GGUF files ({', '.join(p.name for p in ggufs[:5])}); "
                               "pass the one to use")
    raise UserError(field, f"{local} is a folder but not a model: it has no config.json (a Hugging Face model "
                           "folder), no .gguf file and no adapter_config.json (a LoRA adapter)")


def _folder_chat_template(folder: Path) -> bool | None:
    """Whether a saved tokenizer has a chat template (a jinja file, or `chat_template` in its config)."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError):
        return None


def has_chat_template(value: str | None, _depth: int = 0) -> bool | None:
    """For prompt_format='chat' before a job: True/False for local models, None when only loading can tell
    (a hub id, the tiny model before it is built). Reads files only; GGUF metadata through `gguf`."""
    if value is None or value == TINY:
        return False  # the tiny model is built without one
    local = Path(value).expanduser()
    if not local.exists():
        return None
    gguf_files = [local] if local.is_file() and local.suffix.lower() == GGUF_SUFFIX else (
        gguf_in_folder(local) if local.is_dir() and not (local / "config.json").is_file() else [])
    if len(gguf_files) == 1:
        try:
            import gguf

            return "tokenizer.chat_template" in gguf.GGUFReader(str(gguf_files[0])).fields
        except Exception:  # noqa: BLE001 - check_model_reference reports a bad file
            return None
    if not local.is_dir():
        return None
    found = _folder_chat_template(local)
    if found is None and (local / "adapter_config.json").is_file() and _depth < MAX_ADAPTER_DEPTH:
        try:
            base = json.loads((local / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
        except (OSError, ValueError):
            return None
        return has_chat_template(base, _depth + 1) if isinstance(base, str) else None
    return found
