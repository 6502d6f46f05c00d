"""Safe evaluation of pandas-query-like obs filters, e.g. ``day == 6 and well == "B"``.

The expression is parsed with :mod:`ast` and only these forms are accepted: column names
(bare, or in backticks for names with spaces), literals (numbers, strings, True/False/None),
lists/tuples of literals, comparisons (``== != < <= > >= in not in``, chained), ``and or not``,
``& | ~``, unary minus and arithmetic (``+ - * / // % **``) between columns and literals.
No function calls, attribute access, subscripts or ``@`` locals: an expression cannot run
code.

Bounded cost: every operation is checked *before* it is computed. A string or list literal
may hold at most :data:`MAX_LITERAL_ITEMS` characters / items (``'a' * 10**9`` is refused),
an exponent is at most :data:`MAX_EXPONENT` in size and an integer at most
:data:`MAX_INT_BITS` bits (``2 ** 10**10`` is refused), so a filter never allocates gigabytes
or hangs.

Arithmetic semantics: a division (``/ // %``) by zero -- a literal zero, or a column holding
zero in some row -- is an error naming the divisor and the rows, not a silent inf/NaN; so is
arithmetic over columns that overflows (a new inf, or an integer result beyond int64). NaN
already present in an obs column (a missing value) stays NaN and compares False, as in pandas.

Why not ``pandas.DataFrame.query`` / ``pandas.eval``: they run method calls on columns
(``well.str.len()``, and so any Series method, including ones that write files), resolve
attributes (dunder names included), build literals of any size and give inf for ``x / 0``
without a word; ``jobs/benchmark_readers.py`` checks each case and found them no faster on 1M
rows (numexpr is not installed). See docs/benchmarks.md, "Hand-written readers vs libraries".

Every problem with the expression raises :class:`FilterError`, which is both a
:class:`~lmi_distributed.errors.ConfigError` (a bad study setting) and a
:class:`~lmi_distributed.errors.DataError` (older callers catch that), naming the variable and
the expression. :func:`validate_filter` runs the same checks without any data, so a study can
be validated up front.
"""
from __future__ import annotations

import ast
import operator
import re
from typing import Any, Callable

import numpy as np

from lmi_distributed.errors import ConfigError

from .validation import DataError, first_few

__all__ = ["evaluate_filter", "validate_filter", "FilterError", "MAX_LITERAL_ITEMS",
           "MAX_EXPONENT", "MAX_INT_BITS"]

MAX_LITERAL_ITEMS = 100_000  # characters of a string / items of a list built in a filter
MAX_EXPONENT = 1024  # |exponent| of ``**``
MAX_INT_BITS = 4096  # bits of an integer built from literals

_CMP = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_ARITH = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_DIVISIONS = (ast.Div, ast.FloorDiv, ast.Mod)
_CONST_NAMES = {"True": True, "False": False, "None": None}


class FilterError(ConfigError, DataError):
    """A ``where`` filter that cannot be evaluated; names the variable and the expression."""


class _Unknown:
    """Stands for a column's values when a filter is checked without data."""

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return "<column>"


_UNKNOWN = _Unknown()


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


def _parse(expr: str, what: str) -> tuple[ast.Expression, dict[str, str]]:
    if not isinstance(expr, str):
        raise FilterError(f"{what}: filter must be a string, got {type(expr).__name__}")
    if "@" in expr:
        raise FilterError(f"{what}: filter {expr!r} uses '@' (local variables are not allowed)")
    src, bt = _substitute_backticks(expr)
    try:
        src = _boolean_ops(src.strip())
        tree = ast.parse(src, mode="eval")
    except (SyntaxError, ValueError) as exc:  # tokenize raises on unterminated input too
        raise FilterError(f"{what}: cannot parse filter {expr!r} "
                          f"({getattr(exc, 'msg', exc)})") from None
    return tree, bt


class _Evaluator:
    """Walks a parsed filter; ``column(name)`` gives a column's values (or ``_UNKNOWN``)."""

    def __init__(self, expr: str, what: str, bt: dict[str, str],
                 column: Callable[[str], Any], ids=None) -> None:
        self.expr, self.what, self.bt, self.column, self.ids = expr, what, bt, column, ids

    def fail(self, msg: str) -> FilterError:
        return FilterError(f"{self.what}: filter {self.expr!r}: {msg}")

    def label(self, node: ast.AST) -> str:
        """Readable text of a sub-expression (column names shown as written)."""
        if isinstance(node, ast.Name):
            return repr(self.bt.get(node.id, node.id))
        text = ast.unparse(node)
        for key, real in self.bt.items():
            text = text.replace(key, f"`{real}`")
        return f"`{text}`"

    # ---- literals
    def lit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.lit(node.operand)
        if isinstance(node, ast.Name) and node.id in _CONST_NAMES:
            return _CONST_NAMES[node.id]
        raise self.fail(f"only literals allowed in lists (got {self.label(node)})")

    # ---- nodes
    def ev(self, node: ast.AST):
        if isinstance(node, ast.Expression):
            return self.ev(node.body)
        if isinstance(node, ast.BoolOp):
            vals = [self.as_bool(self.ev(v)) for v in node.values]
            if any(v is _UNKNOWN for v in vals):
                return _UNKNOWN
            out = vals[0]
            for v in vals[1:]:
                out = (out & v) if isinstance(node.op, ast.And) else (out | v)
            return out
        if isinstance(node, ast.UnaryOp):
            v = self.ev(node.operand)
            if v is _UNKNOWN:
                return v
            if isinstance(node.op, (ast.Not, ast.Invert)):
                v = self.as_bool(v)
                return (not v) if isinstance(v, (bool, np.bool_)) else ~v
            if isinstance(node.op, (ast.USub, ast.UAdd)):
                if isinstance(v, (str, list)) or (hasattr(v, "dtype") and v.dtype.kind not in "iufb"):
                    raise self.fail(f"cannot negate {self.label(node.operand)}")
                return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            a, b = self.as_bool(self.ev(node.left)), self.as_bool(self.ev(node.right))
            if a is _UNKNOWN or b is _UNKNOWN:
                return _UNKNOWN
            return (a & b) if isinstance(node.op, ast.BitAnd) else (a | b)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            return self.arith(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Name):
            if node.id in _CONST_NAMES:
                return _CONST_NAMES[node.id]
            return self.column(self.bt.get(node.id, node.id))
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.lit(e) for e in node.elts]
        raise self.fail(f"{type(node).__name__} is not allowed (only column names, literals, "
                        "comparisons, and/or/not, & | ~, arithmetic)")

    def compare(self, node: ast.Compare):
        left = self.ev(node.left)
        out = None
        for op, right_node in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                if isinstance(right_node, (ast.List, ast.Tuple, ast.Set)):
                    vals = [self.lit(e) for e in right_node.elts]
                else:
                    vals = [self.lit(right_node)]
                res = _UNKNOWN if left is _UNKNOWN else _isin(left, vals)
                if isinstance(op, ast.NotIn) and res is not _UNKNOWN:
                    res = ~res if not isinstance(res, bool) else not res
                right = None
            elif type(op) in _CMP:
                right = self.ev(right_node)
                if left is _UNKNOWN or right is _UNKNOWN:
                    res = _UNKNOWN
                else:
                    try:
                        res = _CMP[type(op)](left, right)
                    except TypeError as exc:
                        raise self.fail(f"cannot compare ({exc})") from None
            else:
                raise self.fail("operator not allowed")
            if out is None:
                out = res
            elif out is _UNKNOWN or res is _UNKNOWN:
                out = _UNKNOWN
            else:
                out = out & res
            left = right
        return out

    def arith(self, node: ast.BinOp):
        a, b = self.ev(node.left), self.ev(node.right)
        op = type(node.op)
        self.check_sizes(node, a, b)
        if op in _DIVISIONS:
            self.check_divisor(node, b)
        if a is _UNKNOWN or b is _UNKNOWN:
            return _UNKNOWN
        if isinstance(a, list) or isinstance(b, list):
            if op not in (ast.Add, ast.Mult):
                raise self.fail(f"cannot apply {type(node.op).__name__} to a list in "
                                f"{self.label(node)}")
        try:
            out = _ARITH[op](a, b)
        except ZeroDivisionError:  # pragma: no cover - caught by check_divisor
            raise self.fail(f"division by zero in {self.label(node)}") from None
        except (TypeError, OverflowError, ValueError) as exc:
            raise self.fail(f"cannot compute {self.label(node)} ({type(exc).__name__}: "
                            f"{exc})") from None
        return self.check_result(node, a, b, out)

    def check_sizes(self, node: ast.BinOp, a, b) -> None:
        """Refuse, before computing, results that would be huge (bounded cost)."""
        import pandas as pd

        op = type(node.op)
        if op is ast.Mod and (isinstance(a, str) or _seq_size(a) is not None):
            raise self.fail(f"string formatting with % is not allowed in {self.label(node)}")
        if op is ast.Pow:
            for v in (a, b):
                if isinstance(v, (list, str)):
                    raise self.fail(f"cannot raise a string or list to a power in {self.label(node)}")
            if _is_number(b) and abs(b) > MAX_EXPONENT:
                raise self.fail(f"exponent {b!r} in {self.label(node)} is too large (at most "
                                f"{MAX_EXPONENT})")
            if isinstance(a, int) and isinstance(b, int) and b > 0 and \
                    a.bit_length() * b > MAX_INT_BITS:
                raise self.fail(f"{self.label(node)} is too large (more than {MAX_INT_BITS} bits)")
            return
        if op is ast.Mult:
            for seq, n in ((a, b), (b, a)):
                size = _seq_size(seq)
                if size is not None and isinstance(n, (int, np.integer)) and not isinstance(n, bool):
                    if size * max(int(n), 0) > MAX_LITERAL_ITEMS:
                        raise self.fail(f"{self.label(node)} repeats a string or list to more "
                                        f"than {MAX_LITERAL_ITEMS} items")
                if size is not None and isinstance(n, pd.Series) and n.dtype.kind in "iu":
                    if size * max(int(n.max()) if len(n) else 0, 0) > MAX_LITERAL_ITEMS:
                        raise self.fail(f"{self.label(node)} repeats strings to more than "
                                        f"{MAX_LITERAL_ITEMS} characters")
            if isinstance(a, int) and isinstance(b, int) and \
                    a.bit_length() + b.bit_length() > MAX_INT_BITS:
                raise self.fail(f"{self.label(node)} is too large (more than {MAX_INT_BITS} bits)")
        if op is ast.Add:
            sa, sb = _seq_size(a), _seq_size(b)
            if sa is not None and sb is not None and sa + sb > MAX_LITERAL_ITEMS:
                raise self.fail(f"{self.label(node)} builds a string or list of more than "
                                f"{MAX_LITERAL_ITEMS} items")

    def check_divisor(self, node: ast.BinOp, b) -> None:
        """A zero divisor is an error (not a silent inf/NaN), named with its rows."""
        import pandas as pd

        if isinstance(b, pd.Series) and b.dtype.kind in "iufb":
            zero = np.flatnonzero((b == 0).to_numpy())
            if zero.size:
                raise self.fail(f"division by zero: {self.label(node.right)} is 0 in "
                                f"{zero.size} of {len(b)} rows; first rows: "
                                f"{self.rows(b, zero)}")
        elif _is_number(b) and b == 0:
            raise self.fail(f"division by zero in {self.label(node)}")

    def check_result(self, node: ast.BinOp, a, b, out):
        """Arithmetic over columns that overflows (new inf, int64 wrap-around) is an error."""
        import pandas as pd

        if not isinstance(out, pd.Series) or out.dtype.kind not in "iuf":
            if isinstance(out, float) and not np.isfinite(out) and \
                    all(not _is_number(v) or np.isfinite(v) for v in (a, b)):
                raise self.fail(f"{self.label(node)} overflows to {out}")
            return out
        fin_in = np.ones(len(out), dtype=bool)
        for v in (a, b):
            if isinstance(v, pd.Series):
                if v.dtype.kind not in "iufb":
                    return out
                fin_in &= np.isfinite(v.to_numpy(dtype=np.float64, na_value=np.nan))
            elif _is_number(v) and not np.isfinite(v):
                return out
        if out.dtype.kind in "iu":
            with np.errstate(all="ignore"):
                af = _as_f64(a)
                bf = _as_f64(b)
                wide = _ARITH[type(node.op)](af, bf)
            bad = np.flatnonzero(fin_in & (np.abs(np.asarray(wide, dtype=np.float64)) >= 2.0**63))
            kind = "overflows int64"
        else:
            bad = np.flatnonzero(fin_in & ~np.isfinite(out.to_numpy(dtype=np.float64, na_value=np.nan)))
            kind = "gives inf or NaN (overflow or an invalid power)"
        if bad.size:
            raise self.fail(f"{self.label(node)} {kind} in {bad.size} of {len(out)} rows; "
                            f"first rows: {self.rows(out, bad)}")
        return out

    def rows(self, series, pos: np.ndarray) -> str:
        labels = series.index.to_numpy()[pos[:5]]
        return f"{first_few(pos)} (ids {first_few([str(x) for x in labels])})"

    def as_bool(self, v):
        import pandas as pd

        if v is _UNKNOWN:
            return v
        if isinstance(v, pd.Series):
            if v.dtype == bool:
                return v
            if str(v.dtype) == "boolean":
                return v.fillna(False).astype(bool)
            raise self.fail(f"expected a boolean expression, got values of dtype {v.dtype}")
        return v


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _seq_size(v) -> int | None:
    """Length of a string or list, or the longest string of an object Series; else None."""
    import pandas as pd

    if isinstance(v, (str, list)):
        return len(v)
    if isinstance(v, pd.Series) and v.dtype == object and len(v):
        lens = v.map(lambda x: len(x) if isinstance(x, (str, list)) else 0)
        return int(lens.max())
    return None


def _as_f64(v):
    import pandas as pd

    if isinstance(v, pd.Series):
        return v.to_numpy(dtype=np.float64, na_value=np.nan)
    return float(v)


def _isin(series, vals):
    import pandas as pd

    if isinstance(series, pd.Series):
        return series.isin(vals)
    return series in vals


def validate_filter(expr: str, what: str = "filter", columns=None) -> None:
    """Check a filter without data: syntax, allowed forms, literal sizes, zero divisors.

    ``columns`` (optional): the obs column names; unknown names are then errors too.
    Raises :class:`FilterError` (a ConfigError) naming ``what`` and the expression.
    """
    tree, bt = _parse(expr, what)
    known = None if columns is None else {str(c) for c in columns}

    def column(name: str):
        if known is not None and name not in known and name not in ("id", "index"):
            raise FilterError(f"{what}: unknown column {name!r} in filter {expr!r}; obs "
                              f"columns: {sorted(known)}")
        return _UNKNOWN

    _Evaluator(expr, what, bt, column).ev(tree)


def evaluate_filter(obs, expr: str, what: str) -> np.ndarray:
    """Evaluate ``expr`` over the columns of DataFrame ``obs``; returns a bool mask (len(obs),).

    ``what`` names the place (variable / matrix) in error messages. The row id is available as
    the name ``id`` unless obs has a column of that name. Raises :class:`FilterError`.
    """
    import pandas as pd

    tree, bt = _parse(expr, what)
    columns = {str(c): c for c in obs.columns}

    def column(real: str):
        if real in columns:
            return obs[columns[real]]
        if real == "id" or real == "index":
            return pd.Series(obs.index.to_numpy(), index=obs.index)
        raise FilterError(f"{what}: unknown column {real!r} in filter {expr!r}; obs columns: "
                          f"{list(columns)}")

    ev = _Evaluator(expr, what, bt, column)
    res = ev.ev(tree)
    if isinstance(res, (bool, np.bool_)):
        return np.full(len(obs), bool(res))
    res = ev.as_bool(res)
    mask = np.asarray(res, dtype=bool) if isinstance(res, pd.Series) else np.asarray(res)
    if mask.shape != (len(obs),) or mask.dtype != bool:
        raise FilterError(f"{what}: filter {expr!r} did not give one boolean per row")
    return mask
