"""Safe evaluation of pandas-query-like obs filters, e.g. ``day == 6 and well == "B"``.

The expression is parsed with :mod:`ast` and only these forms are accepted: column names
(bare, or in backticks for names with spaces), literals (numbers, strings, True/False/None),
lists/tuples of literals, comparisons (``== != < <= > >= in not in``, chained), ``and or not``,
``& | ~``, unary minus and arithmetic (``+ - * / // %``) between columns and literals.
No function calls, attribute access, subscripts or ``@`` locals: an expression cannot run
code. Unknown column names raise DataError naming the column and listing the obs columns.
"""
from __future__ import annotations

import ast
import operator
import re
from typing import Any

import numpy as np

from .validation import DataError

__all__ = ["evaluate_filter"]

_CMP = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_BIN = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.BitAnd: operator.and_, ast.BitOr: operator.or_,
}
_CONST_NAMES = {"True": True, "False": False, "None": None}


def _substitute_backticks(expr: str) -> tuple[str, dict[str, str]]:
    names: dict[str, str] = {}

    def repl(m: re.Match) -> str:
        key = f"__bt{len(names)}__"
        names[key] = m.group(1)
        return key

    return re.sub(r"`([^`]*)`", repl, expr), names


def _boolean_ops(src: str) -> str:
    """As in pandas.query, give ``& | ~`` the precedence of ``and or not``."""
    import io
    import tokenize

    out = []
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.OP and tok.string in ("&", "|", "~"):
            out.append((tokenize.NAME, {"&": "and", "|": "or", "~": "not"}[tok.string]))
        else:
            out.append((tok.type, tok.string))
    return tokenize.untokenize(out)


def evaluate_filter(obs, expr: str, what: str) -> np.ndarray:
    """Evaluate ``expr`` over the columns of DataFrame ``obs``; returns a bool mask (len(obs),).

    ``what`` names the place (variable / matrix) in error messages. The row id is available as
    the name ``id`` unless obs has a column of that name.
    """
    import pandas as pd

    if "@" in expr:
        raise DataError(f"{what}: filter {expr!r} uses '@' (local variables are not allowed)")
    src, bt = _substitute_backticks(expr)
    try:
        src = _boolean_ops(src.strip())
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        raise DataError(f"{what}: cannot parse filter {expr!r} ({exc.msg})") from None

    columns = {str(c): c for c in obs.columns}

    def col(name: str):
        real = bt.get(name, name)
        if real in columns:
            return obs[columns[real]]
        if real == "id" or real == "index":
            return pd.Series(obs.index.to_numpy(), index=obs.index)
        raise DataError(
            f"{what}: unknown column {real!r} in filter {expr!r}; obs columns: "
            f"{list(columns)}"
        )

    def lit(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = lit(node.operand)
            return -v
        if isinstance(node, ast.Name) and node.id in _CONST_NAMES:
            return _CONST_NAMES[node.id]
        raise DataError(f"{what}: filter {expr!r}: only literals allowed in lists "
                        f"(got {ast.dump(node)[:60]})")

    def ev(node: ast.AST):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BoolOp):
            vals = [_as_bool(ev(v)) for v in node.values]
            out = vals[0]
            for v in vals[1:]:
                out = (out & v) if isinstance(node.op, ast.And) else (out | v)
            return out
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            if isinstance(node.op, (ast.Not, ast.Invert)):
                return ~_as_bool(v)
            if isinstance(node.op, ast.USub):
                return -v
            if isinstance(node.op, ast.UAdd):
                return v
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, (ast.BitAnd, ast.BitOr)):
                a, b = _as_bool(a), _as_bool(b)
            return _BIN[type(node.op)](a, b)
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            out = None
            for op, right_node in zip(node.ops, node.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    if isinstance(right_node, (ast.List, ast.Tuple, ast.Set)):
                        vals = [lit(e) for e in right_node.elts]
                    else:
                        vals = [lit(right_node)]
                    res = _isin(left, vals)
                    if isinstance(op, ast.NotIn):
                        res = ~res
                    right = None
                elif type(op) in _CMP:
                    right = ev(right_node)
                    try:
                        res = _CMP[type(op)](left, right)
                    except TypeError as exc:
                        raise DataError(f"{what}: filter {expr!r}: cannot compare ({exc})") from None
                else:
                    raise DataError(f"{what}: filter {expr!r}: operator not allowed")
                out = res if out is None else (out & res)
                left = right
            return out
        if isinstance(node, ast.Name):
            if node.id in _CONST_NAMES:
                return _CONST_NAMES[node.id]
            return col(node.id)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [lit(e) for e in node.elts]
        raise DataError(
            f"{what}: filter {expr!r}: {type(node).__name__} is not allowed (only column "
            "names, literals, comparisons, and/or/not, & | ~, arithmetic)"
        )

    res = ev(tree)
    if isinstance(res, (bool, np.bool_)):
        return np.full(len(obs), bool(res))
    res = _as_bool(res)
    mask = np.asarray(res, dtype=bool)
    if mask.shape != (len(obs),):
        raise DataError(f"{what}: filter {expr!r} did not give one boolean per row")
    return mask


def _isin(series, vals):
    import pandas as pd

    if isinstance(series, pd.Series):
        return series.isin(vals)
    return series in vals


def _as_bool(v):
    import pandas as pd

    if isinstance(v, pd.Series):
        if v.dtype == bool:
            return v
        if str(v.dtype) == "boolean":
            return v.fillna(False).astype(bool)
        raise DataError(f"filter: expected a boolean expression, got values of dtype {v.dtype}")
    return v
