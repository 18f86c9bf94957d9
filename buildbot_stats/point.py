"""The unit of data that flows from a capture to a storage backend."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from dataclasses import field


@dataclass(frozen=True)
class Point:
    """One measurement: its series, tags, fields and its own time.

    This is the package's vocabulary for a point; the seed's ``postStatsValue(post_data,
    series_name, context)`` names stay at the backends' public edge.

    ``time`` is seconds since the Unix epoch (UTC) as a float, the same unit as
    ``reactor.seconds()``. Backends that need integers (InfluxDB) round it to whole
    microseconds, the precision captures use to keep points of one build apart.
    """

    series: str
    tags: dict = field(default_factory=dict)
    fields: dict = field(default_factory=dict)
    time: float | None = None


def to_epoch_seconds(value) -> float | None:
    """Seconds since the epoch for a datetime (naive means UTC), a number, or None."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    return float(value)


def to_epoch_ns(seconds: float) -> int:
    """Integer nanoseconds, rounded to the microsecond (see :class:`Point`)."""
    return round(seconds * 1_000_000) * 1000
