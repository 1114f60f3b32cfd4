"""Command lines built from frozen dataclasses: one option per field, its docstring as help.

CleanRL-style: the dataclass is the single description of a script's settings. Options are
``--field-name``; booleans get ``--flag / --no-flag``; tuple fields
take several values; optional fields accept ``none``. Only the options given on the command line
are returned, so that callers can layer them over defaults and presets.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from rl_warmup._docs import field_docs


def _kind(annotation: Any) -> tuple[str, bool, bool]:
    """``(scalar type name, is a tuple, may be None)`` of a field annotation (a string under
    ``from __future__ import annotations``)."""
    text = str(annotation).replace(" ", "")
    optional = text.endswith("|None")
    base = text.removesuffix("|None")
    is_tuple = base.startswith("tuple[")
    if is_tuple:
        base = base[len("tuple[") :].split(",")[0]
    if base not in ("int", "float", "str", "bool"):
        raise TypeError(f"unsupported field type {annotation!r}")
    return base, is_tuple, optional


def _coerce_scalar(name: str, value: Any, kind: str) -> Any:
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if kind == "float":
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"{name}: expected text, got {value!r}")
    return str(value)


def coerce_value(cls: type, name: str, value: Any, *, source: str = "settings") -> Any:
    """Convert ``value`` (a YAML scalar or list, or command-line text) to the type of field
    ``name`` of dataclass ``cls``; tuples accept lists or comma/space separated text.

    :raises ValueError: unknown field or a value of the wrong type, naming ``source``.
    """
    known = {f.name: f for f in dataclasses.fields(cls)}
    if name not in known:
        raise ValueError(f"{source}: unknown {cls.__name__} field {name!r}")
    kind, is_tuple, optional = _kind(known[name].type)
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))):
        return None
    try:
        if is_tuple:
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            if not isinstance(value, list | tuple):
                value = [value]
            return tuple(_coerce_scalar(name, v, kind) for v in value)
        return _coerce_scalar(name, value, kind)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def _fmt_default(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) or "(empty)"
    if value == "":
        return '""'
    return str(value)


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    exclude: Sequence[str] = (),
    defaults: dict[str, Any] | None = None,
) -> None:
    """Add one option per field of dataclass ``cls`` (default ``SUPPRESS``: absent when not given).

    :param defaults: defaults to show in the help instead of the dataclass's.
    """
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        base, is_tuple, optional = _kind(f.type)
        default = (defaults or {}).get(f.name, f.default)
        help_text = docs.get(f.name, "").replace("``", "")
        help_text = f"{help_text} (default: {_fmt_default(default)})".replace("%", "%%")
        names = [f"--{f.name.replace('_', '-')}"]
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if base == "bool":
            parser.add_argument(*names, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        metavar = {"int": "INT", "float": "FLOAT", "str": "TEXT"}[base]
        if optional:
            metavar += "|none"
        if is_tuple:
            parser.add_argument(*names, nargs="*", metavar=metavar, **kwargs)
        else:
            parser.add_argument(*names, metavar=metavar, **kwargs)


def given_values(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The values of ``cls``'s fields that were given on the command line (still strings)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(namespace).items() if k in names}


def stop_on_sigterm() -> None:
    """Make SIGTERM (``docker stop``, SLURM preemption, ``kill``) stop the process as Ctrl-C does:
    a ``KeyboardInterrupt`` in the main thread, so the running run saves its checkpoint and the
    command prints how to resume. Call it from a script's ``main``."""
    import signal

    def _handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _handler)


def parse_as(parser: argparse.ArgumentParser, argv: Sequence[str] | None, prog: str | None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` under the program name ``prog`` (when given), so that usage
    and errors name the command as the user typed it (``rl-warmup train``, ``python scripts/...``)."""
    if prog:
        parser.prog = prog
    return parser.parse_args(argv)
