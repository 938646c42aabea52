"""The sandbox block templates run in: Jinja2's immutable sandbox with hard limits.

Block templates come from marketers and from users' folders, and they see event data that
comes from shoppers, so a template must never run long, grow memory without bound, reach
Python internals or fold a huge literal at compile time. On top of
`ImmutableSandboxedEnvironment` (no underscore attributes, no mutation of lists and dicts):

- `range` is capped at `MAX_RANGE` items, and every `{% for %}` loop is rewritten at load
  time to draw its items through a `Budget`, so nested loops are bounded in steps and time;
- `*`, `**`, `+` and `%` are intercepted (which also stops Jinja from constant-folding them
  at compile time) and refuse results larger than `MAX_STRING` items or `MAX_INT_BITS` bits;
- `~` concatenation is checked the same way;
- only an allowlist of filters and of string methods can be called, each one guarded;
- the only global is `range`.

Every limit breach raises `RenderError`, the one error type of rendering. A render must run
inside `budget_scope(...)`; guarded operations outside one raise `RenderError` too (which
also keeps Jinja from evaluating them at compile time).
"""

from __future__ import annotations

import gc
import re
import threading
import time
from collections.abc import Callable, Iterator, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from types import BuiltinMethodType, MethodType
from typing import Any

from jinja2 import ChainableUndefined, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as DEFAULT_FILTERS
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from blocks.cleaning import http_url
from blocks.views import MISSING, DataView

#: Largest list `range` may build: more than any block needs, small enough to be harmless.
MAX_RANGE = 1_000
#: Largest string or list a template may build in one operation (characters or items).
MAX_STRING = 20_000
#: Largest integer a template may compute: enough for any price arithmetic.
MAX_INT_BITS = 256
#: Loop iterations plus guarded calls one block render may make.
MAX_STEPS = 20_000
#: CPU-time budget of one block render, in seconds (checked on the injected clock, by
#: default the rendering thread's CPU time: a render descheduled while other threads run
#: is not cut short, a runaway template still is; typical renders take under 0.5 ms).
TIME_LIMIT = 0.05

LOOP_FILTER = "dcb-loop"  # a name no template can write (it is not an identifier)
SIZE_FILTER = "dcb-size"

STRING_METHODS = frozenset(
    {
        "upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip", "startswith",
        "endswith", "isdigit", "isalpha", "isalnum", "isupper", "islower", "replace", "split",
        "count", "find",
    }
)  # fmt: skip
LOOP_METHODS = frozenset({"cycle", "changed"})
ALLOWED_FILTERS = frozenset(
    {
        "abs", "attr", "capitalize", "count", "d", "default", "e", "escape", "filesizeformat",
        "first", "float", "format", "int", "join", "last", "length", "list", "lower", "map",
        "max", "min", "reject", "rejectattr", "replace", "reverse", "round", "select",
        "selectattr", "sort", "string", "striptags", "sum", "title", "trim", "truncate",
        "unique", "upper", "urlencode", "wordcount", "wordwrap",
    }
)  # fmt: skip
_PRINTF_WIDTH = re.compile(r"%[-#0 +]*(\*|\d{4,})|%[-#0 +]*\d*\.(\*|\d{4,})")


class RenderError(Exception):
    """Rendering a block failed: a template error, a sandbox refusal or a limit breached."""


class _CollectorTime(threading.local):
    total = 0.0  # CPU seconds the garbage collector has taken in this thread
    started: float | None = None


_COLLECTOR = _CollectorTime()


def _on_collect(phase: str, _info: dict[str, Any]) -> None:
    if phase == "start":
        _COLLECTOR.started = time.thread_time()
    elif _COLLECTOR.started is not None:
        _COLLECTOR.total += time.thread_time() - _COLLECTOR.started
        _COLLECTOR.started = None


def watch_collector() -> None:
    """Start counting the garbage collector's time per thread (idempotent), for
    `render_clock`."""
    if _on_collect not in gc.callbacks:
        gc.callbacks.append(_on_collect)


def render_clock() -> float:
    """This thread's CPU time less what the garbage collector took in it: a full collection
    of a large heap can take tens of milliseconds, and when it happens to run during a
    render it is not the template's doing. Call `watch_collector()` first."""
    return time.thread_time() - _COLLECTOR.total


class Budget:
    """Steps and time (CPU time outside the garbage collector, by default) left for one
    block render; `tick` raises when spent."""

    __slots__ = ("_clock", "_deadline", "_steps", "time_limit")

    def __init__(
        self,
        clock: Callable[[], float] = render_clock,
        time_limit: float = TIME_LIMIT,
        max_steps: int = MAX_STEPS,
    ) -> None:
        self._clock = clock
        self.time_limit = time_limit
        self._deadline = clock() + time_limit
        self._steps = max_steps

    def tick(self) -> None:
        """Spend one step; raises `RenderError` when steps or time have run out."""
        self._steps -= 1
        if self._steps < 0:
            raise RenderError(f"template exceeded {MAX_STEPS} loop and call steps")
        now = self._clock()
        if now > self._deadline:
            spent = (now - self._deadline + self.time_limit) * 1000
            raise RenderError(
                f"template exceeded its {self.time_limit * 1000:g} ms time limit "
                f"({spent:.0f} ms of CPU time)"
            )


_BUDGET: ContextVar[Budget | None] = ContextVar("dcb_render_budget", default=None)


@contextmanager
def budget_scope(budget: Budget) -> Iterator[Budget]:
    """Make `budget` the one every guarded operation draws on until the block ends."""
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is None:
        raise RenderError("template code ran outside a render budget")
    budget.tick()


def _sized(value: Any, what: str) -> Any:
    """`value` itself, or `RenderError` if it is a string or list over `MAX_STRING`."""
    if isinstance(value, str | list | tuple) and len(value) > MAX_STRING:
        raise RenderError(f"{what} would build {len(value)} items (limit {MAX_STRING})")
    return value


def _refuse_size(size: int, what: str) -> None:
    if size > MAX_STRING:
        raise RenderError(f"{what} would build {size} items (limit {MAX_STRING})")


# --- operators -------------------------------------------------------------------------


def _check_mul(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise RenderError(f"multiplication would exceed {MAX_INT_BITS} bits")
        return
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, Sized) and isinstance(times, int):
            _refuse_size(len(seq) * max(times, 0), "repetition")


def _check_pow(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        if base.bit_length() * exponent > MAX_INT_BITS:
            raise RenderError(f"power would exceed {MAX_INT_BITS} bits")
    elif isinstance(exponent, int | float) and abs(exponent) > MAX_INT_BITS:
        raise RenderError(f"exponent {exponent} is too large")


def _check_printf(fmt: Any) -> None:
    if isinstance(fmt, str) and _PRINTF_WIDTH.search(fmt):
        raise RenderError("format widths of 1000 or more (or '*') are refused")


def _check_add(left: Any, right: Any) -> None:
    if isinstance(left, Sized) and isinstance(right, Sized):
        _refuse_size(len(left) + len(right), "concatenation")


_BINOP_CHECKS: dict[str, Callable[[Any, Any], None]] = {
    "*": _check_mul,
    "**": _check_pow,
    "+": _check_add,
    "%": lambda left, _right: _check_printf(left),
}


# --- filters and calls -------------------------------------------------------------------


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        hits = text.count(old) if old else len(text) + 1
        _refuse_size(len(text) + hits * max(len(new) - len(old), 0), "replace")


def _check_join(items: Any, separator: Any) -> None:
    if isinstance(items, Sized) and isinstance(separator, str):
        _refuse_size(len(items) * len(separator), "join")


def _check_arguments(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse arguments that would make a filter or method build something huge."""
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_STRING:
            raise RenderError(f"{name}: argument {arg} is too large")
    if name == "replace" and len(args) >= 2:
        _check_replace(value, args[0], args[1])
    elif name == "join":
        _check_join(value, args[0] if args else kwargs.get("d", ""))
    elif name == "format":
        _check_printf(value)


def _materialized(value: Any, what: str) -> Any:
    """Lazy filter results (map, select...) as a bounded list; everything else sized."""
    if isinstance(value, Iterator):
        items: list[Any] = []
        for item in value:
            _tick()
            items.append(item)
        return _sized(items, what)
    return _sized(value, what)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` with a budget tick, argument checks and a size check on its result."""
    passes_context = getattr(func, "jinja_pass_arg", None) is not None

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        value, *rest = args[1:] if passes_context else args
        _check_arguments(name, value, tuple(rest), kwargs)
        return _materialized(func(*args, **kwargs), f"filter {name!r}")

    return guarded


def _bounded_loop(iterable: Any) -> Iterator[Any]:
    """What every `{% for %}` iterates: the same items, one budget step each."""
    for item in iterable:
        _tick()
        yield item


def _bounded_concat(value: Any) -> Any:
    _tick()
    return _sized(value, "concatenation")


def _http_url_filter(value: Any) -> str:
    return http_url(str(value))


def bounded_range(*args: int) -> range:
    """`range` for templates: at most `MAX_RANGE` items."""
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise RenderError(f"range of {len(numbers)} items (limit {MAX_RANGE})")
    return numbers


class _LoopBounder(NodeTransformer):
    """Routes every loop's items through the budget and size-checks every `~`."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 (visitor protocol)
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return nodes.Filter(node, SIZE_FILTER, [], [], None, None, lineno=node.lineno)


def bound_template(tree: nodes.Template) -> nodes.Template:
    """`tree` with every loop and concatenation drawing on the render budget."""
    bounded = _LoopBounder().visit(tree)
    assert isinstance(bounded, nodes.Template)
    return bounded


class BlockSandbox(ImmutableSandboxedEnvironment):
    """The environment every block template is compiled in (see the module docstring)."""

    intercepted_binops = frozenset(_BINOP_CHECKS)

    def __init__(self, *, html: bool) -> None:
        super().__init__(
            autoescape=html,
            undefined=ChainableUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
            cache_size=0,
        )
        self.globals.clear()
        self.globals["range"] = bounded_range
        self.filters = {
            name: _guard_filter(name, DEFAULT_FILTERS[name]) for name in ALLOWED_FILTERS
        }
        self.filters["http_url"] = _guard_filter("http_url", _http_url_filter)
        self.filters[LOOP_FILTER] = _bounded_loop
        self.filters[SIZE_FILTER] = _bounded_concat

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Data views first (their attributes are plain data), then the sandbox's rules."""
        if type(obj) is DataView:
            if attribute.startswith("_"):
                raise SecurityError(f"access to attribute {attribute!r} is refused")
            value = obj.get(attribute, MISSING)
            return self.undefined(obj=obj, name=attribute) if value is MISSING else value
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        """Refuse a private or internal attribute at once (the default returns an undefined
        that renders as "", hiding the attempt)."""
        raise SecurityError(f"access to attribute {attribute!r} is refused")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _BINOP_CHECKS[operator](left, right)
        return self.binop_table[operator](left, right)

    def is_safe_callable(self, obj: Any) -> bool:
        if obj is bounded_range:
            return True
        if not isinstance(obj, BuiltinMethodType | MethodType):
            return False
        owner = obj.__self__
        if isinstance(owner, str):
            return obj.__name__ in STRING_METHODS
        return isinstance(owner, LoopContext) and obj.__name__ in LOOP_METHODS

    def call(
        __self,  # noqa: N805 (jinja's own signature, so keyword arguments pass through)
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"calling {getattr(__obj, '__name__', 'this object')} is refused")
        _tick()
        name = getattr(__obj, "__name__", "")
        owner = getattr(__obj, "__self__", None)
        if name == "replace" or isinstance(owner, str):
            _check_arguments(name, owner, args, kwargs)
        return _sized(__context.call(__obj, *args, **kwargs), f"{name}()")
