"""Check user-written values against Python type annotations, naming the place on failure.

One checker serves both the spec's own fields (dataclass annotations) and plugin options
(factory signatures), so every error reads the same:
``losses[2].any_class.weight: expected a number, got 'one'``.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlcbench.errors import SpecError

#: Keyword arguments the runner supplies itself; a spec may not set them.
RESERVED_OPTIONS = frozenset({"num_classes", "in_channels"})

_SCALAR_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURAL_NAMES = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}
#: Longer name lists (a family such as every timm model) show only the closest names.
MAX_LISTED = 30


def describe(annotation: Any) -> str:
    """A user-facing name for a type annotation."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return "any value"
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, Sequence):
        if not args:
            return "a list"
        return "a list of " + _PLURAL_NAMES.get(args[0], f"{describe(args[0])} values")
    if origin in (dict, Mapping):
        return "a mapping"
    if annotation is type(None):
        return "null"
    return _SCALAR_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` checked against ``annotation``; raise SpecError naming ``where``.

    Integers widen to floats where a number is declared, and lists become tuples where a
    tuple is declared; nothing else is converted (``'1'`` is not a number).
    """
    if annotation is inspect.Parameter.empty or annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return coerce(value, arg, where)
            except SpecError:
                continue
        raise _mismatch(value, annotation, where)
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _mismatch(value, annotation, where)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, list | tuple):
            raise _mismatch(value, annotation, where)
        item_type = args[0] if args else Any
        items = [coerce(item, item_type, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _mismatch(value, annotation, where)
        return dict(value)
    if _is_instance(value, annotation):
        return float(value) if annotation is float else value
    raise _mismatch(value, annotation, where)


def _is_instance(value: Any, annotation: Any) -> bool:
    if annotation is type(None):
        return value is None
    if isinstance(value, bool):
        return annotation is bool
    if annotation is float:
        return isinstance(value, int | float)
    return isinstance(annotation, type) and isinstance(value, annotation)


def _mismatch(value: Any, annotation: Any, where: str) -> SpecError:
    return SpecError(f"{where}: expected {describe(annotation)}, got {value!r}")


def unknown_key_error(key: str, known: Sequence[str], where: str, what: str = "key") -> SpecError:
    """``where: unknown option 'wieght' — did you mean 'weight'? (known: beta, weight)``."""
    close = difflib.get_close_matches(key, list(known), n=5, cutoff=0.6)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(sorted(known)) if known else "none"
    if len(known) > MAX_LISTED:
        listing = f"{len(known)} names" + (f"; closest: {', '.join(close)}" if close else "")
    return SpecError(f"{where}: unknown {what} {key!r}{hint} (known: {listing})")


def reject_unknown_keys(
    raw: Mapping[Any, Any], known: Sequence[str], where: str, what: str = "key"
) -> None:
    """Fail on the first key of ``raw`` that is not ``known``, with the closest match."""
    for key in raw:
        if key not in known:
            raise unknown_key_error(str(key), known, where, what)


def option_parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    """The parameters a plugin factory takes from a spec, annotations resolved."""
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # unresolvable hints only mean the values go unchecked
        hints = {}
    return [
        param.replace(annotation=hints.get(name, param.annotation))
        for name, param in inspect.signature(factory).parameters.items()
        if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD)
        and name not in RESERVED_OPTIONS
    ]


def validate_options(
    factory: Callable[..., Any], options: Mapping[str, Any], where: str, *, skip: int = 0
) -> dict[str, Any]:
    """Check ``options`` against the factory's parameters and fill in the defaults.

    ``skip`` leading parameters are supplied by the caller (a family's variant name). The
    result states every value, so a resolved config says exactly what ran.
    """
    params = {p.name: p for p in option_parameters(factory)[skip:]}
    open_ended = any(
        p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values()
    )
    resolved: dict[str, Any] = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise SpecError(f"{where}: option names must be strings, got {key!r}")
        if key in RESERVED_OPTIONS:
            raise SpecError(f"{where}.{key}: set by mlcbench from the dataset; remove it")
        if key in params:
            resolved[key] = coerce(value, params[key].annotation, f"{where}.{key}")
        elif open_ended:
            resolved[key] = value
        else:
            raise unknown_key_error(key, list(params), where, "option")
    for name, param in params.items():
        if name in resolved:
            continue
        if param.default is inspect.Parameter.empty:
            raise SpecError(f"{where}: missing required option {name!r}")
        resolved[name] = param.default
    return resolved
