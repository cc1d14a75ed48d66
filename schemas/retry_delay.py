"""The ``Upstash-Retry-Delay`` expression: a tiny arithmetic language, parsed safely.

The expression gives the wait before the next retry in milliseconds. It may use the
variable ``retried`` (0 when computing the first retry's delay), numeric literals,
``+ - * / % **``, parentheses and the functions ``pow sqrt abs exp floor ceil round
min max`` (qstash-api.md §4).

The text is parsed with :func:`ast.parse` and walked against a whitelist of node
types; what survives is rebuilt as a small tree of our own and evaluated by this
module. Nothing is ever handed to ``eval``/``exec``. Arithmetic is IEEE double
precision, like the Go service, so ``9**9**9`` is infinity (then the cap), not a
billion-digit integer. Evaluation never raises: overflow gives infinity, undefined
results (``0/0``, ``sqrt(-1)``) give NaN, and :meth:`RetryDelay.delay_ms` clamps
the result to ``[0, MAX_RETRY_DELAY_MS]`` with NaN counted as 0.
"""

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from kafstash.schemas.defaults import BACKOFF_CAP_S

__all__ = [
    "MAX_EXPRESSION_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_RETRY_DELAY_MS",
    "InvalidRetryDelay",
    "RetryDelay",
    "parse_retry_delay",
]

MAX_EXPRESSION_LENGTH: Final = 256
MAX_EXPRESSION_DEPTH: Final = 64  # a 60-term sum still parses
MAX_RETRY_DELAY_MS: Final = BACKOFF_CAP_S * 1000

VARIABLE: Final = "retried"


class InvalidRetryDelay(ValueError):
    """The expression is not in the retry-delay language (the API answers 400)."""


# --- the evaluated tree -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Number:
    value: float


@dataclass(frozen=True, slots=True)
class _Retried:
    pass


@dataclass(frozen=True, slots=True)
class _Negate:
    operand: "_Node"


@dataclass(frozen=True, slots=True)
class _Binary:
    op: Callable[[float, float], float]
    left: "_Node"
    right: "_Node"


@dataclass(frozen=True, slots=True)
class _Call:
    fn: Callable[..., float]
    args: tuple["_Node", ...]


_Node = _Number | _Retried | _Negate | _Binary | _Call


def _evaluate(node: _Node, retried: float) -> float:
    match node:
        case _Number(value):
            return value
        case _Retried():
            return retried
        case _Negate(operand):
            return -_evaluate(operand, retried)
        case _Binary(op, left, right):
            return op(_evaluate(left, retried), _evaluate(right, retried))
        case _Call(fn, args):
            return fn(*(_evaluate(arg, retried) for arg in args))


# --- total IEEE-style arithmetic ----------------------------------------------------


def _add(a: float, b: float) -> float:
    return a + b


def _sub(a: float, b: float) -> float:
    return a - b


def _mul(a: float, b: float) -> float:
    return a * b


def _div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _mod(a: float, b: float) -> float:
    # Sign of the dividend, like Go's math.Mod and JavaScript's %.
    if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
        return math.nan
    return math.fmod(a, b)


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        odd_integer_exponent = b.is_integer() and b % 2 == 1
        return -math.inf if a < 0 and odd_integer_exponent else math.inf
    except ValueError:  # negative base with a fractional exponent, 0 ** negative
        return math.inf if a == 0 else math.nan


def _sqrt(a: float) -> float:
    return math.sqrt(a) if a >= 0 else math.nan


def _abs(a: float) -> float:
    return abs(a)


def _exp(a: float) -> float:
    try:
        return math.exp(a)
    except OverflowError:
        return math.inf


def _floor(a: float) -> float:
    return float(math.floor(a)) if math.isfinite(a) else a


def _ceil(a: float) -> float:
    return float(math.ceil(a)) if math.isfinite(a) else a


def _round(a: float) -> float:
    # Half away from zero, like Go's math.Round (Python's round() is half to even).
    if not math.isfinite(a):
        return a
    return math.copysign(math.floor(abs(a) + 0.5), a)


def _min(*args: float) -> float:
    return math.nan if any(math.isnan(a) for a in args) else min(args)


def _max(*args: float) -> float:
    return math.nan if any(math.isnan(a) for a in args) else max(args)


_BINARY_OPS: Final[dict[type[ast.operator], Callable[[float, float], float]]] = {
    ast.Add: _add,
    ast.Sub: _sub,
    ast.Mult: _mul,
    ast.Div: _div,
    ast.Mod: _mod,
    ast.Pow: _pow,
}

# name -> (function, minimum argument count, maximum argument count or None)
_FUNCTIONS: Final[dict[str, tuple[Callable[..., float], int, int | None]]] = {
    "pow": (_pow, 2, 2),
    "sqrt": (_sqrt, 1, 1),
    "abs": (_abs, 1, 1),
    "exp": (_exp, 1, 1),
    "floor": (_floor, 1, 1),
    "ceil": (_ceil, 1, 1),
    "round": (_round, 1, 1),
    "min": (_min, 1, None),
    "max": (_max, 1, None),
}


# --- parsing ------------------------------------------------------------------------


def _number(value: object) -> _Number:
    # bool is an int subclass: `True` must not sneak in as 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRetryDelay(f"only numbers are allowed, not {value!r}")
    try:
        return _Number(float(value))
    except OverflowError:  # an integer literal beyond the double range
        return _Number(math.inf)


def _build(node: ast.expr, depth: int) -> _Node:
    if depth > MAX_EXPRESSION_DEPTH:
        raise InvalidRetryDelay(f"expression nests deeper than {MAX_EXPRESSION_DEPTH} levels")
    match node:
        case ast.Constant(value=value):
            return _number(value)
        case ast.Name(id=name, ctx=ast.Load()) if name == VARIABLE:
            return _Retried()
        case ast.Name(id=name):
            raise InvalidRetryDelay(f"unknown name {name!r}; the only variable is {VARIABLE!r}")
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return _Negate(_build(operand, depth + 1))
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return _build(operand, depth + 1)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY_OPS:
            return _Binary(_BINARY_OPS[type(op)], _build(left, depth + 1), _build(right, depth + 1))
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in _FUNCTIONS:
            return _call(name, args, depth)
        case ast.Call():
            raise InvalidRetryDelay(
                f"only the functions {', '.join(_FUNCTIONS)} may be called, "
                "with positional arguments"
            )
        case _:
            raise InvalidRetryDelay(f"{type(node).__name__} is not allowed in a retry delay")


def _call(name: str, args: list[ast.expr], depth: int) -> _Call:
    fn, least, most = _FUNCTIONS[name]
    if len(args) < least or (most is not None and len(args) > most):
        wanted = str(least) if least == most else f"at least {least}"
        raise InvalidRetryDelay(f"{name}() takes {wanted} argument(s), got {len(args)}")
    return _Call(fn, tuple(_build(arg, depth + 1) for arg in args))


@dataclass(frozen=True, slots=True)
class RetryDelay:
    """A parsed ``Upstash-Retry-Delay`` expression; make one with :func:`parse_retry_delay`."""

    expression: str
    _root: _Node = field(repr=False, compare=False)

    def delay_ms(self, retried: int) -> int:
        """Milliseconds to wait before the next retry, clamped to [0, MAX_RETRY_DELAY_MS].

        ``retried`` is how many retries already happened (0 before the first retry).
        """
        value = _evaluate(self._root, float(retried))
        if math.isnan(value) or value <= 0:
            return 0
        if value >= MAX_RETRY_DELAY_MS:
            return MAX_RETRY_DELAY_MS
        return int(value)


def parse_retry_delay(expr: str) -> RetryDelay:
    """Parse ``expr`` or raise :class:`InvalidRetryDelay` saying what is wrong with it."""
    if len(expr) > MAX_EXPRESSION_LENGTH:
        raise InvalidRetryDelay(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    text = expr.strip()
    if not text:
        raise InvalidRetryDelay("expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise InvalidRetryDelay(f"not a valid expression: {text!r}") from exc
    return RetryDelay(expression=expr, _root=_build(tree.body, depth=1))
