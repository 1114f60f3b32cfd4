"""Argument checks shared by the environments: clear ``ValueError`` messages for bad arguments."""

from __future__ import annotations

import numpy as np

MAX_SIZE = 10**6
"""Largest length or count an environment accepts: episodes and tables of this size already take
hundreds of MB; a larger value is a typo more often than an experiment (and would otherwise end
in a ``MemoryError`` or an hour-long reset)."""


def check_int(value: object, name: str, minimum: int = 1, maximum: int = MAX_SIZE) -> int:
    """Return ``value`` as an ``int``, or raise :class:`ValueError` unless it is an integer in
    ``[minimum, maximum]``.

    :param value: the argument to check (``bool`` is rejected).
    :param name: the argument's name, for the message.
    :param minimum: the smallest allowed value.
    :param maximum: the largest allowed value (:data:`MAX_SIZE` by default).
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def check_action(action: object, n: int) -> int:
    """Return a ``Discrete(n)`` action as an ``int``, or raise :class:`ValueError`.

    Accepts Python and numpy integers and one-element integer arrays (what SB3 passes); a value
    that is not a whole number (``1.5``) is refused rather than truncated to another action.
    """
    try:
        a = int(action)  # type: ignore[call-overload]
        whole = bool(a == action)
    except (TypeError, ValueError):
        whole = False
    if not whole or not 0 <= a < n:
        raise ValueError(f"action must be an integer in [0, {n - 1}], got {action!r}")
    return a


def check_probability(value: object, name: str) -> float:
    """Return ``value`` as a ``float``, or raise :class:`ValueError` unless it is a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def check_render_mode(render_mode: str | None, render_modes: list[str]) -> str | None:
    """Return ``render_mode``, or raise :class:`ValueError` unless it is ``None`` or supported."""
    if render_mode is not None and render_mode not in render_modes:
        raise ValueError(f"render_mode must be None or one of {render_modes}, got {render_mode!r}")
    return render_mode
