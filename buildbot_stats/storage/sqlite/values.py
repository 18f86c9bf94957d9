"""How a point's values become a row of the embedded store (see docs/storage-sqlite.rst).

Runs on the reactor thread when the point is posted: the row is a snapshot (a caller may
change its dict afterwards) and a bad value is refused at once, with a reason, instead of
failing later in the writer thread, which writes the JSON
(:mod:`~buildbot_stats.storage.sqlite.layout`).

=====================================  ==============================================
value                                  stored as (in the JSON of the values)
=====================================  ==============================================
bool, int, str                         itself
float                                  itself; NaN and infinities are rejected
None                                   ``null`` (a field without a value)
datetime, date, time                   ISO 8601 string (``isoformat()``)
timedelta                              float seconds
Decimal, Fraction, other numbers       float (integral types: int)
dict with str keys, list, tuple        nested JSON, items converted by these rules
bytes, set, any other type             rejected
=====================================  ==============================================
"""

from __future__ import annotations

import datetime
import math
import numbers

MAX_DEPTH = 32


class Rejected(ValueError):
    """A point that cannot be stored; ``field`` names the culprit (None: the point)."""

    def __init__(self, reason, field=None):
        super().__init__(reason)
        self.reason = reason
        self.field = field

    def kind(self):
        """A short key for 'log each kind of problem once'."""
        return (self.field, self.reason.split(':')[0])


def convertValue(value, where, depth=0):
    """``value`` as something json.dumps writes faithfully, or raise :class:`Rejected`."""
    # bool before int: bool is an int subclass
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Rejected(f"{value!r} is not a finite number", where)
        return value
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return convertValue(float(value), where, depth)
    if depth >= MAX_DEPTH:
        raise Rejected(f"nested deeper than {MAX_DEPTH} levels", where)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise Rejected(f"a nested dict key {k!r} is not a string", where)
            out[k] = convertValue(v, where, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [convertValue(v, where, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise Rejected("bytes are not stored: decode them to str in the capture's callback",
                       where)
    raise Rejected(f"a value of type {type(value).__name__} cannot be stored", where)


def encodeFields(fields):
    if not isinstance(fields, dict):
        raise Rejected(f"the fields (post_data) must be a dict, got {type(fields).__name__}")
    if not fields:
        raise Rejected("a point needs at least one field")
    out = {}
    for name, value in fields.items():
        if not isinstance(name, str) or not name:
            raise Rejected(f"field name {name!r} is not a non-empty string")
        out[name] = convertValue(value, name)
    return out


def encodeTags(tags):
    """Tags are strings: numbers and bools are written with str(), None tags left out."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise Rejected(f"the tags (context) must be a dict, got {type(tags).__name__}")
    out = {}
    for name, value in tags.items():
        if not isinstance(name, str) or not name:
            raise Rejected(f"tag name {name!r} is not a non-empty string")
        if value is None:
            continue
        if isinstance(value, (str, bool, int, float)):
            out[name] = str(value)
        else:
            raise Rejected(f"tag {name!r}: a value of type {type(value).__name__} is not a tag")
    return out


def encodeRow(series, tags, fields, time):
    """The row ``(series, time_us, tags, fields)`` of a point: its tags and fields converted
    (new dicts), its time in whole microseconds."""
    if not isinstance(series, str) or not series:
        raise Rejected(f"series name {series!r} is not a non-empty string")
    if isinstance(time, bool) or not isinstance(time, (int, float)) or not math.isfinite(time):
        raise Rejected(f"timestamp {time!r} is not a finite number of seconds")
    return (series, round(time * 1_000_000), encodeTags(tags), encodeFields(fields))
