"""Deliberately broken variants of a correct solution: contrastive candidates without any model.

Each mutation changes the body of the task's entry-point function in one typical way a model gets code
wrong. The result is `prompt + new body`, so it reads like a completion of the same prompt.
"""

from __future__ import annotations

import ast
import copy
import textwrap
from collections.abc import Callable

SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add,
    ast.And: ast.Or, ast.Or: ast.And,
}


def _body(prompt: str, solution: str, entry_point: str) -> list[ast.stmt] | None:
    try:
        tree = ast.parse(prompt + solution)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            body = list(node.body)
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                body = body[1:]
            return body
    return None


def _first(body: list[ast.stmt], match: Callable[[ast.AST], bool]) -> ast.AST | None:
    for statement in body:
        for node in ast.walk(statement):
            if match(node):
                return node
    return None


def wrong_operator(body: list[ast.stmt]) -> bool:
    node = _first(body, lambda n: (isinstance(n, ast.Compare) and type(n.ops[0]) in SWAPS)
                  or (isinstance(n, (ast.BinOp, ast.BoolOp)) and type(n.op) in SWAPS))
    if node is None:
        return False
    if isinstance(node, ast.Compare):
        node.ops[0] = SWAPS[type(node.ops[0])]()
    else:
        node.op = SWAPS[type(node.op)]()
    return True


def off_by_one(body: list[ast.stmt]) -> bool:
    node = _first(body, lambda n: isinstance(n, ast.Constant) and type(n.value) is int)
    if node is None:
        return False
    node.value += 1
    return True


def missing_edge_case(body: list[ast.stmt]) -> bool:
    """Drop the first `if` (usually the special case), keeping its else-branch if any."""
    nested = [n.body for s in body for n in ast.walk(s) if isinstance(getattr(n, "body", None), list)]
    for container in [body, *nested]:
        for index, statement in enumerate(container):
            if isinstance(statement, ast.If):
                container[index:index + 1] = statement.orelse or [ast.Pass()]
                return True
    return False


MUTATIONS: dict[str, Callable[[list[ast.stmt]], bool]] = {
    "wrong_operator": wrong_operator,
    "off_by_one": off_by_one,
    "missing_edge_case": missing_edge_case,
}


def syntax_error(prompt: str, solution: str) -> str:
    """Drop the colon of the first block opener, or leave a bracket open."""
    lines = solution.splitlines()
    for index, line in enumerate(lines):
        if line.rstrip().endswith(":"):
            lines[index] = line.rstrip()[:-1]
            return prompt + "\n".join(lines) + "\n"
    return prompt + solution.rstrip() + " + (\n"


def variants(prompt: str, solution: str, entry_point: str) -> dict[str, str]:
    """{name: code} for every mutation that applies, the canonical solution first."""
    out = {"canonical": prompt + solution}
    body = _body(prompt, solution, entry_point)
    if body is not None:
        original = "\n".join(ast.unparse(s) for s in body)
        for name, mutate in MUTATIONS.items():
            mutated = copy.deepcopy(body)
            if mutate(mutated):
                text = "\n".join(ast.unparse(s) for s in mutated) or "pass"
                if text != original:
                    out[name] = prompt + textwrap.indent(text, "    ") + "\n"
    out["syntax_error"] = syntax_error(prompt, solution)
    return out
