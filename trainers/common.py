"""Shared plumbing for the training scripts in this folder.

The scripts run as subprocesses of the MCP server and talk to it through two files only: a JSON
config (read once) and a JSON-lines progress file (appended while running). Model loading (hub ids,
folders, GGUF files, adapters, the tiny model) lives in `roopik_rl_mcp.ml`, shared with the evaluation
runner; it is re-exported here for the trainers. The server imports neither, so the heavy ML stack
never lands in the server process.

Progress events, one JSON object per line:

    {"event": "start",   "time": float, "pid": int, "max_steps": int | null}
    {"event": "message", "time": float, "text": str}
    {"event": "log",     "time": float, "step": int, "max_steps": int, "metrics": {str: float}}
    {"event": "end",     "time": float, "status": "succeeded" | "failed", "error": str | null,
                         "metrics": {str: float | int | ...}, "output_dir": str | null}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from roopik_rl_mcp.ml.files import save_json
from roopik_rl_mcp.ml.finetune import is_main_process
from roopik_rl_mcp.ml.loading import load_model_and_tokenizer, pick_device, resolve_base
from roopik_rl_mcp.ml.tiny import TINY_NAMES, build_tiny_model, default_tiny_path, is_tiny, tiny_corpus

try:  # TrainerCallback is only needed by ProgressCallback; keep `common` importable without transformers.
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - transformers is a hard dependency of the project
    TrainerCallback = object  # type: ignore[misc,assignment]

__all__ = [  # the trainers' model helpers, from roopik_rl_mcp.ml
    "TINY_NAMES", "build_tiny_model", "default_tiny_path", "is_tiny", "load_model_and_tokenizer", "pick_device",
    "resolve_base", "save_json", "tiny_corpus",
    "Cancelled", "ProgressCallback", "ProgressWriter", "apply_thread_env", "load_config", "run_main",
]


# --------------------------------------------------------------------------------------------------
# Config and small I/O helpers
# --------------------------------------------------------------------------------------------------


def load_config(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse `--config PATH` and return the JSON object in it (the server writes one per job)."""
    parser = argparse.ArgumentParser(description="Run a training job from a JSON config.")
    parser.add_argument("--config", required=True, help="path to a JSON config file")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as f:
        config = json.load(f)
    if not isinstance(config, dict):
        raise ValueError(f"config {args.config} must hold a JSON object, got {type(config).__name__}")
    return config


def apply_thread_env() -> None:
    """Honour OMP_NUM_THREADS explicitly: jobs share a small machine with the server and each other."""
    value = os.environ.get("OMP_NUM_THREADS")
    if value and value.isdigit() and int(value) > 0:
        import torch

        torch.set_num_threads(int(value))
        with contextlib.suppress(RuntimeError):  # settable only before any parallel work has started
            torch.set_num_interop_threads(int(value))


# --------------------------------------------------------------------------------------------------
# Progress file
# --------------------------------------------------------------------------------------------------


def _float_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    """Keep finite numbers only: the schema promises floats, and NaN is not valid JSON."""
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, bool):
            continue
        if hasattr(value, "item"):  # 0-d tensors / numpy scalars
            with contextlib.suppress(Exception):
                value = value.item()
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[str(key)] = float(value)
    return out


class ProgressWriter:
    """Appends one JSON object per line and flushes at once, so the server can tail the file live."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Under `accelerate launch` every rank runs the script; rank 0 alone writes (and prints) progress.
        self._file = open(self.path, "a", encoding="utf-8") if is_main_process() else None
        self.ended = False

    def write(self, event: str, **fields: Any) -> None:
        if self._file is None:
            return
        record = {"event": event, "time": time.time(), **fields}
        self._file.write(json.dumps(record, default=str, allow_nan=False) + "\n")
        self._file.flush()

    def start(self, max_steps: int | None) -> None:
        self.write("start", pid=os.getpid(), max_steps=max_steps)

    def message(self, text: str) -> None:
        self.write("message", text=text)
        if self._file is not None:
            print(f"[progress] {text}", file=sys.stderr, flush=True)

    def log(self, step: int, max_steps: int, metrics: dict[str, Any]) -> None:
        self.write("log", step=int(step), max_steps=int(max_steps), metrics=_float_metrics(metrics))

    def end(self, status: str, error: str | None, metrics: dict[str, Any] | None, output_dir: str | None) -> None:
        """Write the final event once; later calls (e.g. a signal during shutdown) are ignored."""
        if self.ended:
            return
        self.ended = True
        clean = {k: v for k, v in (metrics or {}).items() if not (isinstance(v, float) and not math.isfinite(v))}
        self.write("end", status=status, error=error, metrics=clean, output_dir=output_dir)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()


class ProgressCallback(TrainerCallback):  # type: ignore[misc,valid-type]
    """Forwards every Trainer log dict (loss, rewards/*, learning_rate, epoch, ...) as a "log" event."""

    def __init__(self, progress: ProgressWriter) -> None:
        self.progress = progress

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - Trainer callback signature
        self.progress.message(f"training started: {state.max_steps} steps")

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if state.is_world_process_zero:
            self.progress.log(state.global_step, state.max_steps, logs or {})


# --------------------------------------------------------------------------------------------------
# Running a script: end event, exit code, SIGTERM
# --------------------------------------------------------------------------------------------------


class Cancelled(BaseException):
    """Raised from the SIGTERM handler; a BaseException so no `except Exception` in a job swallows it."""


def _on_sigterm(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise Cancelled("cancelled")


def run_main(fn: Callable[[dict[str, Any], ProgressWriter], dict[str, Any] | None], argv: list[str] | None = None) -> None:
    """Load the config, run `fn(config, progress)`, and always finish the progress file with an end event.

    `fn` returns the final summary metrics. Exits 0 on success, 1 on error, 143 on SIGTERM.
    """
    try:
        config = load_config(argv)
    except Exception as exc:  # no progress path known yet: stderr and exit code are all we have
        print(f"error: cannot read config: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)

    output_dir = config.get("output_dir") or (
        str(Path(config["result_path"]).expanduser().resolve().parent) if config.get("result_path") else None)
    progress_path = config.get("progress_path") or (Path(output_dir or ".") / "progress.jsonl")
    progress = ProgressWriter(progress_path)
    signal.signal(signal.SIGTERM, _on_sigterm)
    exit_code = 0
    try:
        progress.start(config.get("max_steps"))
        metrics = fn(config, progress) or {}
        progress.end("succeeded", None, metrics, output_dir)
    except (Cancelled, KeyboardInterrupt) as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not interrupt the end event
        progress.end("failed", "cancelled", {}, output_dir)
        exit_code = 143 if isinstance(exc, Cancelled) else 130
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the progress file
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        traceback.print_exc(file=sys.stderr)
        progress.end("failed", f"{type(exc).__name__}: {exc}", {}, output_dir)
        exit_code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) and exc.code else 1
    finally:
        progress.close()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(exit_code)
