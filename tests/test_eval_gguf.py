"""GGUF files wherever a model goes: written here from the tiny model with the `gguf` package (llama
architecture, llama.cpp's tensor names and q/k permutation), converted once and cached by hash, evaluated,
and used as a DPO base; bad files refused before a job."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import anyio
import numpy as np
import pytest

from conftest import call, call_error

LAYER_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (transformers undoes it on load)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_gguf(model_dir: Path, out: Path, quantize: bool = False) -> Path:
    """The tiny model as a llama-architecture GGUF file: F32, or Q8_0 for its matrices when `quantize`."""
    import gguf
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(cfg["num_attention_heads"])
    writer.add_head_count_kv(cfg["num_key_value_heads"])
    writer.add_rope_dimension_count(cfg["hidden_size"] // cfg["num_attention_heads"])
    writer.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_vocab_size(cfg["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quantize else gguf.LlamaFileType.ALL_F32)
    added = {t["id"]: t["content"] for t in tok["added_tokens"]}
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    writer.add_tokenizer_model("gpt2")  # byte-level BPE, as the tiny tokenizer is
    writer.add_tokenizer_pre("default")
    writer.add_token_list([added.get(i, t) for t, i in vocab])
    writer.add_token_types([gguf.TokenType.CONTROL if i in added else gguf.TokenType.NORMAL for _, i in vocab])
    writer.add_token_merges([" ".join(m) for m in tok["model"]["merges"]])
    writer.add_bos_token_id(cfg["bos_token_id"])
    writer.add_eos_token_id(cfg["eos_token_id"])
    writer.add_pad_token_id(cfg["pad_token_id"])
    writer.add_add_bos_token(True)
    for name, tensor in load_file(str(model_dir / "model.safetensors")).items():
        if name == "model.embed_tokens.weight":
            gguf_name = "token_embd.weight"
        elif name == "model.norm.weight":
            gguf_name = "output_norm.weight"
        else:
            _, _, layer, *parts, _ = name.split(".")
            key = ".".join(parts)
            gguf_name = f"blk.{layer}.{LAYER_NAMES[key]}.weight"
            if key == "self_attn.q_proj":
                tensor = _permute(tensor, cfg["num_attention_heads"])
            elif key == "self_attn.k_proj":
                tensor = _permute(tensor, cfg["num_key_value_heads"])
        tensor = np.ascontiguousarray(tensor.astype(np.float32))
        if quantize and tensor.ndim == 2:
            kind = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(gguf_name, gguf.quants.quantize(tensor, kind), raw_dtype=kind)
        else:
            writer.add_tensor(gguf_name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Path:
    from roopik_rl_mcp.ml.tiny import build_tiny_model

    return build_tiny_model(tiny_model_dir)


@pytest.fixture(scope="module")
def gguf_file(tiny: Path, tmp_path_factory) -> Path:
    return write_gguf(tiny, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf")


class Messages:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def _logits(folder: str) -> "np.ndarray":
    import torch

    from roopik_rl_mcp.ml.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(folder)
    ids = tokenizer("def add(a, b):\n    return a + b\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits.numpy()


def test_gguf_is_converted_once_and_cached_by_hash(gguf_file, tiny, tmp_path, monkeypatch):
    from roopik_rl_mcp.ml.gguf import SOURCE_FILE, cache_root
    from roopik_rl_mcp.ml.loading import resolve_base

    monkeypatch.setenv("ROOPIK_RL_HOME", str(tmp_path / "home"))
    first = Messages()
    folder = Path(resolve_base(str(gguf_file), progress=first))
    assert folder.parent == cache_root() and (folder / "config.json").is_file()
    assert [line.split(":")[0] for line in first.lines] == ["GGUF 1/4", "GGUF 2/4", "GGUF 3/4", "GGUF 4/4"]
    source = json.loads((folder / SOURCE_FILE).read_text())
    assert source["gguf_file"] == str(gguf_file) and source["architecture"] == "llama"
    assert source["saved_dtype"] == "float32" and folder.name == source["sha256"][:16]
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    np.testing.assert_array_equal(_logits(str(folder)), _logits(str(tiny)))  # an F32 file round-trips exactly

    renamed = tmp_path / "elsewhere" / "same-model.gguf"  # the same bytes elsewhere: the same cached folder
    renamed.parent.mkdir()
    shutil.copy(gguf_file, renamed)
    again = Messages()
    assert resolve_base(str(renamed.parent), progress=again) == str(folder), "a folder holding one GGUF"
    assert len(again.lines) == 2 and "converted before" in again.lines[-1]


def test_quantized_gguf_is_dequantized(tiny, tmp_path, monkeypatch):
    from roopik_rl_mcp.ml.gguf import SOURCE_FILE
    from roopik_rl_mcp.ml.loading import resolve_base
    from roopik_rl_mcp.model_refs import inspect_gguf

    monkeypatch.setenv("ROOPIK_RL_HOME", str(tmp_path / "home"))
    q8 = write_gguf(tiny, tmp_path / "tiny-q8_0.gguf", quantize=True)
    assert inspect_gguf(q8)["tensor_types"] == {"Q8_0": 15, "F32": 5}  # 14 layer matrices + embedding; 5 norms
    folder = resolve_base(str(q8))
    assert json.loads((Path(folder) / SOURCE_FILE).read_text())["saved_dtype"] == "bfloat16"
    exact, approx = _logits(str(tiny)), _logits(folder)
    assert not np.array_equal(exact, approx), "quantization changed the weights"
    assert np.abs(exact - approx).max() < 0.05 * np.abs(exact).max()
    assert (exact.argmax(-1) == approx.argmax(-1)).mean() > 0.9


async def wait_done(client, job_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while (state := await call(client, "job_status", job_id=job_id))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"{job_id} still {state['status']}"
        await anyio.sleep(0.5)
    return state


@pytest.mark.anyio
async def test_a_gguf_file_evaluates_and_is_a_dpo_base(client, store, gguf_file, tiny):
    from test_jobs import log_pairs

    started = await call(client, "evaluate_checkpoint", models=[str(gguf_file), str(tiny)], limit=2, max_new_tokens=8)
    assert started["models"] == ["tiny-f32.gguf", "tiny-llama"]
    done = await wait_done(client, started["job_id"])
    assert done["status"] == "succeeded", done.get("log_tail")
    gguf_model, tiny_model = done["result"]["models"]
    assert gguf_model["gguf"]["gguf_file"] == str(gguf_file) and gguf_model["backend"] == "transformers"
    assert [t["first_completion"] for t in gguf_model["per_task"]] == [t["first_completion"] for t in tiny_model["per_task"]]
    assert done["result"]["comparisons"][0]["tasks_gained"] == done["result"]["comparisons"][0]["tasks_lost"] == []
    messages = [json.loads(line) for line in (Path(done["output_dir"]).parent / "progress.jsonl").read_text().splitlines()]
    assert any(m.get("text", "").startswith("GGUF 2/4: reading and dequantizing") for m in messages), \
        "the conversion is a visible step"

    await log_pairs(client)
    dpo = await call(client, "start_dpo", base_model=str(gguf_file), max_steps=4, batch_size=2, max_length=64)
    trained = await wait_done(client, dpo["job_id"])
    assert trained["status"] == "succeeded", trained.get("log_tail")
    adapter = Path(trained["output_dir"])
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).name == gguf_model["loaded_from"].rsplit("/", 1)[-1], "trained on the cached conversion"
    evaluation = await call(client, "evaluate_checkpoint", model=str(adapter), limit=2, max_new_tokens=8)
    result = await wait_done(client, evaluation["job_id"])
    assert result["status"] == "succeeded", result.get("log_tail")
    assert [m["label"] for m in result["result"]["models"]] == ["base", "adapter"]


@pytest.mark.anyio
async def test_bad_gguf_references_are_refused_before_a_job(client, store, gguf_file, tmp_path):
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(gguf_file.read_bytes()[:-1000])
    not_gguf = tmp_path / "text.gguf"
    not_gguf.write_text("this is not a model")
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.gguf", "b.gguf"):
        shutil.copy(gguf_file, two / name)
    for value, expected in ((truncated, "does not parse"), (not_gguf, "does not parse"), (two, "holds 2 GGUF files")):
        for tool, field in (("evaluate_checkpoint", "model"), ("start_dpo", "base_model")):
            message = await call_error(client, tool, **{field: str(value)})
            assert field in message and expected in message, (tool, value, message)
    assert store.count("jobs") == 0
