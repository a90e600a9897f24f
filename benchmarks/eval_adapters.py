"""Base + two LoRA adapters of the tiny model: one evaluation (the base loaded once, adapters swapped) against
three separate evaluations, each a real runner subprocess as evaluate_checkpoint starts it.

    python benchmarks/eval_adapters.py [--tasks 10] [--max-new-tokens 32]

Prints each run's wall time, the ratio, and what each extra adapter costs in the shared run as a share of
the first checkpoint's time (the issue's target: <= 25%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def make_adapter(base: Path, out: Path, seed: int) -> Path:
    """A PEFT LoRA adapter with random non-zero weights (it changes what the model writes)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from roopik_rl_mcp.ml.loading import load_model_and_tokenizer

    torch.manual_seed(seed)
    model, tokenizer = load_model_and_tokenizer(str(base))
    get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                     init_lora_weights=False)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def run(models: list[dict], work: Path, name: str, common: dict) -> tuple[float, dict]:
    out = work / name
    config = {**common, "models": models, "result_path": str(out / "result.json"),
              "progress_path": str(out / "progress.jsonl")}
    path = work / f"{name}.json"
    path.write_text(json.dumps(config))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "roopik_rl_mcp.evaluation.runner", "--config", str(path)],
                          cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return elapsed, json.loads((out / "result.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from roopik_rl_mcp.ml.tiny import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="roopik-eval-adapters-"))
    tiny = build_tiny_model(work / "tiny-llama")
    a, b = make_adapter(tiny, work / "adapter-a", 1), make_adapter(tiny, work / "adapter-b", 2)
    common = {"tiny_model_path": str(tiny), "limit": args.tasks, "n_samples": 1, "k": [1], "temperature": 0,
              "max_new_tokens": args.max_new_tokens, "prompt_format": "completion"}
    specs = [{"label": "base", "model": str(tiny)}, {"label": "a", "model": str(a)}, {"label": "b", "model": str(b)}]

    together_s, together = run(specs, work, "together", common)
    separate = [run([spec], work, f"alone-{spec['label']}", common) for spec in specs]
    separate_s = sum(s for s, _ in separate)
    same = all(m["per_task"] == alone["models"][0]["per_task"] for m, (_, alone) in zip(together["models"], separate))

    print(f"tiny model, {args.tasks} HumanEval tasks, greedy, max_new_tokens={args.max_new_tokens}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {os.cpu_count()} CPUs")
    print(f"  one call, base + 2 adapters : {together_s:6.2f} s wall")
    for (s, alone), spec in zip(separate, specs):
        print(f"  separate call {spec['label']:<13}: {s:6.2f} s wall "
              f"(load {alone['models'][0]['load_s']:.2f} s, generation {alone['models'][0]['generation_s']:.2f} s, "
              f"execution {alone['models'][0]['execution_s']:.2f} s)")
    print(f"  three separate calls        : {separate_s:6.2f} s wall")
    for m in together["models"]:
        print(f"    in the one call, {m['label']:<10} load share {m['load_s']:.2f} s, generation {m['generation_s']:.2f} s, "
              f"execution {m['execution_s']:.2f} s")
    print(f"  ratio one / three           : {together_s / separate_s:6.2f}")
    first = separate[0][0]
    extra = (together_s - first) / 2
    print(f"  each extra adapter          : {extra:6.2f} s = {extra / first:.0%} of the first checkpoint's "
          f"{first:.2f} s (target <= 25%)")
    print(f"  same verdicts either way    : {same}")


if __name__ == "__main__":
    main()
