"""Which language a piece of generated code is in, when the client did not say.

Agents often leave `language` out. Running a React component as Python would store a `build_error`
episode with reward 0, ready to become a "rejected" training example for the wrong reason; so the
language is guessed from the code, the guess is recorded on the episode, and a client can always
override it. Valid Python wins (JavaScript almost never parses as Python); otherwise markup and
JavaScript/TypeScript signals decide, and code with no such signal stays Python (a Python syntax error
is then reported as one).
"""

from __future__ import annotations

import ast
import re
from typing import Literal

Language = Literal["python", "tsx", "jsx", "ts", "js", "html"]
UI_LANGUAGES: tuple[str, ...] = ("tsx", "jsx", "ts", "js", "html")

_HTML_START = re.compile(r"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.I | re.S)
_JSX = re.compile(r"<([A-Z][\w.]*|[a-z][\w-]*)(\s+[\w:-]+(=\{|=\")|\s*/?>)|</[A-Za-z][\w.-]*>|<>|className=")
_JS = re.compile(
    r"^\s*(import\s+[\w{}*\s,]+\s+from\s+['\"]|import\s+['\"]|export\s+(default|const|function|class)\b"
    r"|(const|let|var)\s+[\w{}\[\],\s]+=|function\s*\w*\s*\()|=>|\bdocument\.|\bconsole\.log\(",
    re.M,
)
_TS = re.compile(
    r"^\s*(export\s+)?(interface|type)\s+\w+|:\s*(string|number|boolean|void|any|unknown|never|React\.\w+)\b"
    r"|\bas\s+(const|string|number|any|unknown|HTML\w+)\b|<\w+Props>|\w+\?:\s"
    r"|\b\w+<[\w\s|\[\],.<>]+>\(|\)\s*:\s*[\w.<>\[\]|]+\s*(=>|\{)|\bReact\.FC\b|:\s*\w+\[\]",
    re.M,
)


def _is_python(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def infer_language(code: str) -> Language:
    """The most likely language of `code` (see the module docstring for the order of the rules)."""
    if _HTML_START.search(code):
        return "html"
    if _is_python(code):
        return "python"
    typescript = bool(_TS.search(code))
    if _JSX.search(code):
        return "tsx" if typescript else "jsx"
    if _JS.search(code):
        return "ts" if typescript else "js"
    return "python"
