"""The time ranges the Statistics page offers, and the window each one reads."""

from __future__ import annotations

#: The ranges the page offers: name -> seconds back from now (None: everything).
RANGES = {'24h': 86400, '7d': 7 * 86400, '30d': 30 * 86400, 'all': None}


def timeWindow(range_name, now):
    """``(start, end)`` in seconds of a range name; ``end`` is None (up to now and later
    points of a clock that runs ahead)."""
    seconds = RANGES[range_name]
    return (None if seconds is None else now - seconds), None
