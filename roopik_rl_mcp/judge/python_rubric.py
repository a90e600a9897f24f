"""The offline rubric for Python: deterministic scores from execution signals and static analysis.

Rubric (each 0-10):
- functionality: passed -> 10; failed -> 9 x share of tests passed; no tests and a clean run -> 6;
  runtime error or timeout -> 3 x share of tests passed (at most 2 when none ran); build error -> 0.
- quality: starts at 10 for code that parses. Minus 1.5 per pyflakes warning (at most 4.5), minus 0.5 per
  unused top-level function (not referenced by the code, the tests or the task; at most 3), minus 1 or 2
  for the highest cyclomatic complexity of the used functions above 5 or 10 (radon), minus 1 when a used
  public function lacks a docstring, minus 0.5 when no function has type hints, minus 1 per bare `except:` (at most 2), minus 0.5 for lines
  over 120 characters. Code that does not parse scores 0.
- prompt_match: 3 for code that parses; +4 when every function the task names (`def name(` in the task,
  or the entry point) is defined; +3 x the share of the task's identifiers found in the code.
overall is the mean of the three. Same input, same output: no model, no network.
"""

from __future__ import annotations

import ast
import re

from roopik_rl_mcp.schemas import Scores

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
STOPWORDS = {
    "the", "and", "for", "with", "that", "this", "return", "returns", "list", "def", "from", "given", "import",
    "true", "false", "none", "int", "str", "float", "bool", "typing", "you", "are", "which", "not", "should",
    "each", "all", "into", "have", "has", "its", "can", "will", "example", "examples", "function", "write",
}


def _functionality(episode: dict) -> tuple[float, str]:
    status = episode["status"]
    total, passed = episode.get("tests_total") or 0, episode.get("tests_passed") or 0
    share = passed / total if total else 0.0
    if status == "passed":
        return 10.0, f"all {total} tests passed"
    if status == "failed":
        return round(9.0 * share, 2), f"{passed}/{total} tests passed"
    if status == "no_tests":
        return 6.0, "ran cleanly, but no tests were given"
    if status == "build_error":
        return 0.0, "the code does not compile"
    return round(min(2.0, 3.0 * share) if total else 1.0, 2), f"{status}: {passed}/{total} tests passed before it stopped"


def _used_names(tree: ast.AST, *others: str | None) -> set[str]:
    """Names the code refers to, plus identifiers in the tests and task: what makes a function 'used'."""
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for text in others:
        names |= set(IDENTIFIER.findall(text or ""))
    return names


def _quality(code: str, tests: str | None = None, task: str | None = None, entry_point: str | None = None
             ) -> tuple[float, list[str]]:
    """Judged on the functions that matter: padding with unused functions or comments never helps."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return 0.0, ["does not parse"]
    notes: list[str] = []
    score = 10.0
    import io

    from pyflakes.api import check as pyflakes_check
    from pyflakes.reporter import Reporter
    from radon.complexity import cc_visit

    count = pyflakes_check(code, "solution.py", Reporter(io.StringIO(), io.StringIO()))
    if count:
        score -= min(4.5, 1.5 * count)
        notes.append(f"{count} pyflakes warning(s)")
    top_level = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    used = _used_names(tree, tests, task, entry_point)
    unused = [f for f in top_level if f.name not in used] if len(top_level) > 1 else []
    if unused:
        score -= min(3.0, 0.5 * len(unused))
        notes.append(f"{len(unused)} unused function(s)")
    unused_names = {f.name for f in unused}
    blocks = [b for b in cc_visit(code) if b.name not in unused_names]
    if blocks:
        worst = max(b.complexity for b in blocks)
        if worst > 10:
            score -= 2
            notes.append(f"high complexity ({worst})")
        elif worst > 5:
            score -= 1
            notes.append(f"moderate complexity ({worst})")
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name not in unused_names]
    public = [f for f in functions if not f.name.startswith("_")]
    if public and not all(ast.get_docstring(f) for f in public):
        score -= 1
        notes.append("public functions without docstrings")
    if functions and not any(f.returns or any(a.annotation for a in f.args.args) for f in functions):
        score -= 0.5
        notes.append("no type hints")
    bare = sum(isinstance(n, ast.ExceptHandler) and n.type is None for n in ast.walk(tree))
    if bare:
        score -= min(2, bare)
        notes.append(f"{bare} bare except")
    if any(len(line) > 120 for line in code.splitlines()):
        score -= 0.5
        notes.append("lines over 120 chars")
    return max(0.0, round(score, 2)), notes


def _without_comments(code: str) -> str:
    """The code's tokens without comments: stuffing the task's words into comments earns nothing."""
    import io
    import tokenize

    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type != tokenize.COMMENT]
        return tokenize.untokenize(tokens)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return code


def _prompt_match(task: str, code: str, entry_point: str | None) -> tuple[float, str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return 0.0, "code does not parse"
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    wanted = set(re.findall(r"def\s+([A-Za-z_]\w*)\s*\(", task))
    if entry_point:
        wanted.add(entry_point)
    score = 3.0
    if not wanted or wanted <= defined:
        score += 4.0
    missing = sorted(wanted - defined)
    task_words = {w.lower() for w in IDENTIFIER.findall(task)} - STOPWORDS
    code_words = {w.lower() for w in IDENTIFIER.findall(_without_comments(code))}
    overlap = len(task_words & code_words) / len(task_words) if task_words else 1.0
    score += 3.0 * overlap
    note = f"defines {'all' if not missing else 'not ' + ', '.join(missing)} of the named functions; " \
           f"{overlap:.0%} of the task's terms appear in the code"
    return round(min(10.0, score), 2), note


def judge(episode: dict) -> tuple[Scores, str]:
    functionality, f_note = _functionality(episode)
    quality, q_notes = _quality(episode["code"], episode.get("test_code"), episode["task"], episode.get("entry_point"))
    match, m_note = _prompt_match(episode["task"], episode["code"], episode.get("entry_point"))
    scores = Scores(functionality=functionality, quality=quality, prompt_match=match)
    rationale = (
        f"Functionality {functionality}/10: {f_note}. "
        f"Quality {quality}/10: {', '.join(q_notes) or 'clean'}. "
        f"Prompt match {match}/10: {m_note}."
    )
    return scores, rationale
