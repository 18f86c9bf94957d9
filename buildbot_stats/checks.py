"""Wording shared by the configuration checks: name a value by its type, never its content.

A master.cfg value in the wrong place may be a password (arguments shifted by one), so a
check that rejects a value says what kind of value it got, not what it holds.
"""

from __future__ import annotations


def aTypeName(value):
    """``'an int'``, ``'a str'``, ``'a CaptureBuildDuration'``: the type of ``value`` with
    its article."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def shown(value):
    """``value`` as a configuration message shows it: a plain string, number, bool or None
    as written (``'days'``, ``0``), anything else by its type only (``a dict``): the repr of
    an object or a container may hold anything, a secret included."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return repr(value)
    return aTypeName(value)
