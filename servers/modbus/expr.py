"""Safe, vectorised evaluation of derived-point expressions.

A derived point is defined by a small arithmetic expression over other
points of the same poll group, e.g. ``"{p_in} - {p_out}"`` or
``"sqrt(max({dp}, 0)) * 3.2"``. The expression is parsed with :mod:`ast`
and compiled into a tree of closures over numpy functions; nothing is ever
passed to :func:`eval` or :func:`compile` for execution.

Allowed syntax
--------------
- numbers (``int`` and ``float`` literals; evaluated as float64),
- references ``{name}`` to other points (``name`` is an identifier),
- the constants ``pi`` and ``e``,
- binary ``+ - * / **``, unary ``-`` and ``+``, parentheses,
- calls to the whitelisted functions in :data:`FUNCTIONS` with positional
  arguments only.

Anything else (attribute access, subscripts, comparisons, other names,
keyword arguments, strings, lambdas, ...) is rejected with an
:class:`ExpressionError` whose message says what was found and where.

Arithmetic follows IEEE 754 in float64: division by zero gives ``inf`` or
``nan`` rather than raising, and NaN inputs (gaps) propagate to NaN.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sisock.core.errors import BadArgument

__all__ = ["ExpressionError", "Expression", "compile_expression", "FUNCTIONS"]

_REF = re.compile(r"\{([^{}]*)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = "_sisock_ref_"
#: Longest accepted expression, in characters.
MAX_LENGTH = 1000


def _min(*args: np.ndarray) -> np.ndarray:
    out = args[0]
    for a in args[1:]:
        out = np.minimum(out, a)
    return out


def _max(*args: np.ndarray) -> np.ndarray:
    out = args[0]
    for a in args[1:]:
        out = np.maximum(out, a)
    return out


#: Whitelisted functions: name -> (implementation, min args, max args or None).
FUNCTIONS: dict[str, tuple[Callable[..., np.ndarray], int, int | None]] = {
    "abs": (np.abs, 1, 1),
    "min": (_min, 2, None),
    "max": (_max, 2, None),
    "sqrt": (np.sqrt, 1, 1),
    "log": (np.log, 1, 1),
    "log10": (np.log10, 1, 1),
    "exp": (np.exp, 1, 1),
    "sin": (np.sin, 1, 1),
    "cos": (np.cos, 1, 1),
    "tan": (np.tan, 1, 1),
    "atan2": (np.arctan2, 2, 2),
    "hypot": (np.hypot, 2, 2),
    "clip": (np.clip, 3, 3),
}

_CONSTANTS = {"pi": np.pi, "e": np.e}

_BINOPS: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.Pow: np.power,
}

_UNARY: dict[type, Callable[[np.ndarray], np.ndarray]] = {
    ast.USub: np.negative,
    ast.UAdd: np.positive,
}

Env = Mapping[str, np.ndarray]
_Node = Callable[[Env], np.ndarray]


class ExpressionError(BadArgument):
    """An expression is malformed or uses something that is not allowed."""


@dataclass(frozen=True)
class Expression:
    """A compiled derived-point expression.

    Attributes
    ----------
    source : str
        The expression as written in the configuration.
    references : tuple of str
        Names of the points the expression reads, in order of first use.
    """

    source: str
    references: tuple[str, ...]
    _fn: _Node

    def __call__(self, values: Env) -> np.ndarray:
        """Evaluate over ``values`` (name -> array), returning a float64 array.

        Parameters
        ----------
        values : mapping of str to numpy.ndarray
            Must hold every name in :attr:`references`; arrays broadcast
            against each other.
        """
        with np.errstate(all="ignore"):
            out = self._fn(values)
        return np.asarray(out, dtype=np.float64)


def _show(node: ast.AST) -> str:
    """Source text of ``node`` with references written back as ``{name}``."""
    return re.sub(_PLACEHOLDER + r"(\w+)", r"{\1}", ast.unparse(node))


def _where(node: ast.AST) -> str:
    return f" in {_show(node)!r}"


def compile_expression(source: str, known: set[str] | None = None) -> Expression:
    """Parse and check ``source``; return a callable :class:`Expression`.

    Parameters
    ----------
    source : str
        Expression text, with point references written ``{name}``.
    known : set of str, optional
        Names that may be referenced. When given, any other reference is an
        error.

    Raises
    ------
    ExpressionError
        On bad syntax, a disallowed construct or an unknown reference. The
        message says which.
    """
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("expression must be a non-empty string")
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression is {len(source)} characters long; the limit is {MAX_LENGTH}")
    if _PLACEHOLDER in source:
        raise ExpressionError(f"expression may not contain {_PLACEHOLDER!r}")
    refs: list[str] = []

    def _sub(m: re.Match[str]) -> str:
        name = m.group(1).strip()
        if not _IDENT.match(name):
            raise ExpressionError(f"bad reference {m.group(0)!r}: expected {{name}} with an identifier")
        if known is not None and name not in known:
            raise ExpressionError(
                f"reference {{{name}}} is not a known point (known here: {', '.join(sorted(known)) or 'none'})"
            )
        if name not in refs:
            refs.append(name)
        return _PLACEHOLDER + name

    text = _REF.sub(_sub, source)
    if "{" in text or "}" in text:
        raise ExpressionError(f"unbalanced or nested braces in {source!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error in {source!r}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"expression {source!r} is nested too deeply") from None
    try:
        fn = _build(tree.body)
    except RecursionError:
        raise ExpressionError(f"expression {source!r} is nested too deeply") from None
    return Expression(source=source, references=tuple(refs), _fn=fn)


def _build(node: ast.AST) -> _Node:
    """Turn an AST node into a closure ``env -> array`` (recursive)."""
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ExpressionError(f"only numbers are allowed as literals, got {v!r}{_where(node)}")
        c = np.float64(v)
        return lambda env: c
    if isinstance(node, ast.Name):
        if node.id.startswith(_PLACEHOLDER):
            key = node.id[len(_PLACEHOLDER) :]
            return lambda env: env[key]
        if node.id in _CONSTANTS:
            c = np.float64(_CONSTANTS[node.id])
            return lambda env: c
        raise ExpressionError(
            f"unknown name {node.id!r}{_where(node)}: write point references as {{{node.id}}}; functions must be called"
        )
    if isinstance(node, ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ExpressionError(
                f"operator {type(node.op).__name__} is not allowed{_where(node)} (allowed: + - * / **)"
            )
        left, right = _build(node.left), _build(node.right)
        return lambda env: op(left(env), right(env))
    if isinstance(node, ast.UnaryOp):
        uop = _UNARY.get(type(node.op))
        if uop is None:
            raise ExpressionError(f"unary operator {type(node.op).__name__} is not allowed{_where(node)}")
        operand = _build(node.operand)
        return lambda env: uop(operand(env))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            what = _show(node.func)
            raise ExpressionError(
                f"call to {what!r} is not allowed{_where(node)} (allowed functions: {', '.join(sorted(FUNCTIONS))})"
            )
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError(f"{node.func.id}() takes positional arguments only{_where(node)}")
        impl, lo, hi = FUNCTIONS[node.func.id]
        n = len(node.args)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo}..{hi}"
            raise ExpressionError(f"{node.func.id}() takes {want} arguments, got {n}{_where(node)}")
        args = [_build(a) for a in node.args]
        return lambda env: impl(*(a(env) for a in args))
    raise ExpressionError(f"{type(node).__name__} is not allowed in an expression{_where(node)}")
