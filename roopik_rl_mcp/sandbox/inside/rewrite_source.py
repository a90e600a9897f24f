"""The source-level rewrite of `assert` statements: the path most tests take (HumanEval's `check` functions).

Each `assert t, m` becomes `ASSERT(i, lambda: (t), lambda: (m))` on the same lines of the *source*, and
`assert x == y` becomes `ASSERT_EQ(i, lambda: (x), lambda: (y), ...)`, whose helper also checks that neither
side claims to equal anything (see harness.check_equal); then the C compiler does the rest. Several times
cheaper than building, transforming and compiling a Python AST (see rewrite_ast.py, which takes what this one
cannot: `Unsuitable`)."""

from __future__ import annotations

import ast

from .placeholders import PLACEHOLDER


class Unsuitable(Exception):
    """These tests need the AST rewrite; the message says why."""


def rewrite(source: str, tree: ast.Module):
    """Rewrite each `assert t, m` in the *source* to `ASSERT(i, lambda: (t), lambda: (m))` on the same lines
    and let the C compiler do the rest (much cheaper than building and compiling a Python AST).

    Returns (new source, asserts, imports) or raises Unsuitable when the general AST rewrite is
    needed: test_* functions, asserts in class bodies or with yield/await/walrus/super (a lambda would
    change their meaning), or line endings the tokenizer and this code might count differently."""
    data = source.encode()
    if b"\r" in data or b"\x0c" in data:
        raise Unsuitable("line endings")
    starts = [0]
    find, index = data.find, data.find(b"\n")
    while index >= 0:  # offsets of line starts (a C-level search, not a loop over every byte)
        starts.append(index + 1)
        index = find(b"\n", index + 1)
    asserts: list[ast.Assert] = []
    imports: list[ast.stmt] = []

    def visit(statements, in_class: bool) -> None:
        for node in statements:
            kind = type(node)
            if kind is ast.Assert:
                if in_class:
                    raise Unsuitable("assert in a class body")
                asserts.append(node)
                continue
            if kind is ast.FunctionDef:
                if node.name.startswith("test_"):
                    raise Unsuitable("test functions")
                visit(node.body, False)
                continue
            if kind is ast.AsyncFunctionDef:
                continue
            if kind is ast.ClassDef:
                visit(node.body, True)
                continue
            if kind is ast.Import or kind is ast.ImportFrom:
                imports.append(node)
                continue
            for name in node._fields:
                value = getattr(node, name, None)
                if type(value) is list and value:
                    for item in value:
                        if isinstance(item, ast.stmt):
                            visit((item,), in_class)
                        elif isinstance(item, (ast.excepthandler, ast.match_case)):
                            visit(item.body, in_class)

    visit(tree.body, False)

    def span(node) -> tuple[int, int]:
        return starts[node.lineno - 1] + node.col_offset, starts[node.end_lineno - 1] + node.end_col_offset

    out: list[bytes] = []
    position = 0
    records = []
    call = repr(PLACEHOLDER["ASSERT"]).encode() + b".__call__("
    call_eq = repr(PLACEHOLDER["ASSERT_EQ"]).encode() + b".__call__("
    for index, node in enumerate(asserts):
        begin, end = span(node)
        original = data[begin:end]
        if b"yield" in original or b"await" in original or b":=" in original or b"super(" in original:
            raise Unsuitable("assert needs its own scope")
        test = node.test
        if type(test) is ast.Compare and len(test.ops) == 1 and type(test.ops[0]) is ast.Eq:
            # `assert X == Y`: both sides evaluated (in order) and compared by the helper, which also
            # checks that neither side is an object that claims to equal anything.
            left_begin, left_end = span(test.left)
            right_begin, right_end = span(test.comparators[0])
            text = (call_eq + b"%d, lambda: (" % index + data[left_begin:left_end] + b"), lambda: ("
                    + data[right_begin:right_end] + b"), ")
        else:
            test_begin, test_end = span(test)
            text = call + b"%d, lambda: (" % index + data[test_begin:test_end] + b"), "
        if node.msg is not None:
            msg_begin, msg_end = span(node.msg)
            text += b"lambda: (" + data[msg_begin:msg_end] + b")"
        else:
            text += b"None"
        missing = original.count(b"\n") - text.count(b"\n")
        text += b"\n" * missing + b")"
        out.append(data[position:begin])
        out.append(text)
        position = end
        records.append({"id": f"assert#{index}", "line": node.lineno,
                        "source": original.decode(errors="replace")[:300], "kind": "assert"})
    out.append(data[position:])
    return b"".join(out).decode(), records, imports

