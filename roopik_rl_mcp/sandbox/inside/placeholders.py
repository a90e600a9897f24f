"""Placeholders: the constants that stand for the harness's helpers in compiled tests and flows.

The fork server compiles the tests with a random string constant wherever a helper (`OK`, `FAIL`, ...) is
called; `substitute` later swaps each such constant for the helper object itself, so the helpers are
constants of the tests' code objects, not names that code under test could look up or rebind in any
namespace. The nonce makes the strings unguessable to the tests' source, which cannot then spell one."""

from __future__ import annotations

import ast
import os

_NONCE = os.urandom(8).hex()
PLACEHOLDER = {name: f"\x00roopik:{_NONCE}:{name}" for name in
               ("OK", "FAIL", "ERR", "TEND", "XERR", "SNAP", "FINAL", "EXIT", "EXEC", "SOL", "TESTS", "NS", "RET",
                "SENT", "ENTRY", "NOENTRY", "TEST_FUNCTIONS", "ASSERT", "ASSERT_EQ", "UCASE")}
"""helper name -> the string constant compiled in its place."""


class AssertFailed(Exception):
    """Raised by a rewritten `assert` whose condition was false; only routes to the failure branch."""


def constant(name: str) -> ast.Constant:
    """The AST node for the placeholder of helper `name`."""
    return ast.Constant(value=PLACEHOLDER[name])


def call(name: str, *args: ast.expr) -> ast.Expr:
    """A statement calling helper `name`: `placeholder.__call__(...)`, not `placeholder(...)` (calling a
    literal makes the compiler warn)."""
    func = ast.Attribute(value=constant(name), attr="__call__", ctx=ast.Load())
    return ast.Expr(ast.Call(func=func, args=list(args), keywords=[]))


class NamesToPlaceholders(ast.NodeTransformer):
    """For the harness's own templates (the flows): a bare name that is a helper's becomes its placeholder."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Constant):
            node.func = ast.copy_location(ast.Attribute(value=node.func, attr="__call__", ctx=ast.Load()), node.func)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in PLACEHOLDER and isinstance(node.ctx, ast.Load):
            return ast.copy_location(constant(node.id), node)
        return node


def substitute(code, mapping: dict, deep: bool = True):
    """Replace placeholder constants (in nested code objects too if `deep`): changed code objects are copies."""
    changed = False
    consts = []
    for value in code.co_consts:
        if type(value) is str and value in mapping:
            consts.append(mapping[value])
            changed = True
        elif deep and isinstance(value, type(code)):
            new = substitute(value, mapping)
            changed |= new is not value
            consts.append(new)
        else:
            consts.append(value)
    if not changed:
        return code
    return code.replace(co_consts=tuple(consts))
