"""A trained reward model (trainers/reward_model.py's LoRA adapter on a sequence-classification head) as a
scoring process: the judge's `reward_model:<job_id>` talks to it over stdin/stdout, one JSON object a line.

    python -m roopik_rl_mcp.ml.reward_scoring --adapter <job output dir> [--max-length 512]
    stdin:  {"prompt": str, "response": str}        stdout: {"score": float} or {"error": str}

The first line written is {"ready": true, "load_s": float} once the model is loaded. The process exits when
stdin closes, so it never outlives the server that started it. Imported by this process only: the server
never loads torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def load_reward_model(adapter_dir: str) -> tuple[Any, Any]:
    """The base as a one-label classifier with the adapter (and its trained score head) on top, in eval mode."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from roopik_rl_mcp.ml.loading import pick_device

    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    base = config["base_model_name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device, dtype = pick_device()
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    model = PeftModel.from_pretrained(model, adapter_dir).to(device).eval()
    torch.set_grad_enabled(False)
    return model, tokenizer


def score(model: Any, tokenizer: Any, prompt: str, response: str, max_length: int) -> float:
    """The Bradley-Terry score of prompt + response, as the reward trainer scored its pairs."""
    ids = tokenizer(prompt + response, truncation=True, max_length=max_length, return_tensors="pt")
    device = next(model.parameters()).device
    return float(model(**ids.to(device)).logits[0, 0])


def serve(adapter_dir: str, max_length: int, lines_in=sys.stdin, out=sys.stdout) -> None:
    started = time.perf_counter()
    model, tokenizer = load_reward_model(adapter_dir)
    print(json.dumps({"ready": True, "load_s": round(time.perf_counter() - started, 3)}), file=out, flush=True)
    for line in lines_in:
        try:
            request = json.loads(line)
            answer: dict[str, Any] = {"score": score(model, tokenizer, str(request["prompt"]),
                                                     str(request["response"]), max_length)}
        except Exception as exc:  # one bad request must not end the process
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), file=out, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="a reward_model job's output folder")
    parser.add_argument("--max-length", type=int, default=512, help="tokens kept per prompt + response")
    args = parser.parse_args(argv)
    from trainers.common import apply_thread_env

    apply_thread_env()
    serve(args.adapter, args.max_length)


if __name__ == "__main__":
    main()
