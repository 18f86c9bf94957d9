"""One point becomes one InfluxDB line protocol line, or a counted, explained rejection.

:class:`LineEncoder` is total: for every input it either returns a line that InfluxDB 1.x
accepts and stores as documented in docs/encoding-table.rst.inc, or raises
:class:`PointRejected` with a short stable ``reason``. Fields and tags that cannot be written are
dropped from an otherwise valid point and reported back as ``(what, reason)`` pairs so the
caller can count and log them.

Every rule below was checked against the real ``influxd`` 1.6 (tests/test_lineprotocol_influxdb.py).
Facts about its parser that shape the rules (they are not all in InfluxDB's documentation):

* a line whose first non-blank character is ``#`` is a comment, and leading spaces, tabs and NUL
  characters of a line are skipped, so such a measurement needs a leading backslash;
* there is no escape for a newline anywhere; a line must never contain one;
* in measurements, tag keys and tag values, *any* character after a backslash counts as escaped,
  and ``\\\\`` is not an escape: a name ending in a backslash, or with a backslash right before a
  comma, space, equals sign or (in field keys) a double quote cannot be written at all;
* the first field key loses a leading tab or NUL character;
* field and tag key ``time`` make the server drop the whole point; two tags with the same key
  make it reject the whole line;
* timestamps must lie within +-9223372036854775806 ns; integers within int64;
  NaN and infinities cannot be written.

The returned line contains no ``\\n`` and no lone surrogate (it always encodes to UTF-8). It may
contain other characters that Python's ``str.splitlines()`` treats as line breaks (``\\r``,
``\\x0b``, ``\\x85``, ``\\u2028``...), which InfluxDB stores as they are: split batches on
``\\n`` only.
"""

from __future__ import annotations

import datetime
import decimal
import json
import numbers
import re

__all__ = ['LineEncoder', 'PointRejected', 'INT64_MIN', 'INT64_MAX', 'TIME_MIN_NS', 'TIME_MAX_NS']

INT64_MIN = -(2 ** 63)
INT64_MAX = 2 ** 63 - 1
# influxd refuses the two extreme int64 values as timestamps (models.MinNanoTime/MaxNanoTime)
TIME_MIN_NS = INT64_MIN + 2
TIME_MAX_NS = INT64_MAX - 1

# Reasons, stable short codes (counted by the caller; documented in the encoding table).
# A whole point:
BAD_MEASUREMENT = 'bad-measurement'
BAD_TIMESTAMP = 'bad-timestamp'
BAD_FIELDS = 'bad-fields'
BAD_TAGS = 'bad-tags'
NO_FIELDS = 'no-fields'
# One field or tag:
NONE = 'none'
EMPTY_KEY = 'empty-key'
RESERVED_KEY = 'reserved-key'
DUPLICATE_KEY = 'duplicate-key'
BAD_BACKSLASH = 'bad-backslash'
EMPTY_TAG_VALUE = 'empty-tag-value'
INT_OUT_OF_RANGE = 'int-out-of-range'
NON_FINITE_FLOAT = 'non-finite-float'
UNCONVERTIBLE = 'unconvertible'


class PointRejected(ValueError):
    """No valid line can be made of this point. ``reason`` is a short stable code (see the
    module constants), ``dropped`` the fields/tags dropped on the way (for ``no-fields``)."""

    def __init__(self, reason, message, dropped=()):
        super().__init__(message)
        self.reason = reason
        self.dropped = list(dropped)


# Escape tables, built once (as influxdb-client-python does). A newline cannot be escaped in line
# protocol: it becomes the two characters backslash and n, in names and in string values alike.
_MEASUREMENT_TABLE = str.maketrans({',': '\\,', ' ': '\\ ', '\n': '\\n'})
_KEY_TABLE = str.maketrans({',': '\\,', ' ': '\\ ', '=': '\\=', '\n': '\\n'})
_STRING_TABLE = str.maketrans({'\\': '\\\\', '"': '\\"', '\n': '\\n'})

# a backslash that the server would pair with the next character, or with the separator after it
_BAD_BACKSLASH = re.compile(r'\\(?:[, ="]|\Z)')
# characters the server skips (or reads as a comment) at the start of a line / of the first field
_MEASUREMENT_LEADERS = ('#', '\t', '\x00')
_FIELD_KEY_LEADERS = ('\t', '\x00')
_RESERVED_KEYS = frozenset(['time'])
_SURROGATE = re.compile('[\ud800-\udfff]')

_CACHE_LIMIT = 10_000  # names remembered per kind; cleared when full (names repeat a lot)


class _Drop(Exception):
    """Internal: this field or tag cannot be written (``args[0]`` is the reason)."""


def _fix_surrogates(text: str) -> str:
    """``text`` if it encodes to UTF-8, else with each lone surrogate replaced by U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode('utf-8')
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub('\ufffd', text)


def _json(value) -> str:
    """Compact JSON, keys sorted when they can be; anything JSON lacks goes through str()."""
    try:
        return json.dumps(value, separators=(',', ':'), sort_keys=True, ensure_ascii=False,
                          default=str)
    except TypeError:  # keys of mixed types cannot be sorted (or a key JSON refuses)
        pass
    except Exception as e:  # a circular reference, a failing __str__, a too long int...
        raise _Drop(UNCONVERTIBLE) from e
    try:
        return json.dumps(value, separators=(',', ':'), ensure_ascii=False, default=str)
    except Exception as e:
        raise _Drop(UNCONVERTIBLE) from e


def _str(value) -> str:
    try:
        text = str(value)
    except Exception as e:  # a user's object whose __str__ fails
        raise _Drop(UNCONVERTIBLE) from e
    if type(text) is not str:  # a str subclass: keep only the text
        text = str.__str__(text)
    return text


def to_text(value) -> str:
    """The text of a name or a tag value (before escaping). Raises _Drop(NONE) for None."""
    t = type(value)
    if t is str:
        return value
    if value is None:
        raise _Drop(NONE)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, numbers.Integral):
        try:
            return str(int(value))
        except ValueError as e:  # more digits than sys.get_int_max_str_digits()
            raise _Drop(UNCONVERTIBLE) from e
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode('utf-8', 'replace')
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return repr(value.total_seconds())
    if isinstance(value, (dict, list, tuple)):
        return _json(value)
    return _str(value)


def _escape_name(text: str, table, leaders) -> str:
    """Escape a measurement, tag key, tag value or field key (already converted to text)."""
    return _escape_name_lossy(text, table, leaders)[0]


def _escape_name_lossy(text: str, table, leaders):
    """(escaped, lossy): lossy when two different texts could give this escaped name (a
    newline, a lone surrogate or a leading backslash added), so duplicates must be checked."""
    if _BAD_BACKSLASH.search(text):
        raise _Drop(BAD_BACKSLASH)
    fixed = _fix_surrogates(text)
    lossy = fixed is not text or '\n' in text
    escaped = fixed.translate(table)
    if escaped.startswith(leaders):
        escaped = '\\' + escaped
        lossy = True
    return escaped, lossy


def _key(key, table, leaders) -> str:
    return _key_lossy(key, table, leaders)[0]


def _key_lossy(key, table, leaders):
    text = to_text(key)
    if not text:
        raise _Drop(EMPTY_KEY)
    if text in _RESERVED_KEYS:
        raise _Drop(RESERVED_KEY)
    return _escape_name_lossy(text, table, leaders)


def _tag_value(value) -> str:
    text = to_text(value)
    if not text:
        raise _Drop(EMPTY_TAG_VALUE)
    return _escape_name(text, _KEY_TABLE, ())


def _string_field(text: str) -> str:
    return '"' + _fix_surrogates(text).translate(_STRING_TABLE) + '"'


def field_value(value) -> str:
    """The line protocol text of any field value (the slow, general path). Raises _Drop."""
    t = type(value)
    if value is None:
        raise _Drop(NONE)
    if isinstance(value, bool):  # before int: bool is an int subclass
        return 'true' if value else 'false'
    if isinstance(value, numbers.Integral):
        value = int(value)
        if INT64_MIN <= value <= INT64_MAX:
            return f'{value}i'
        # writing it as a float would silently change the field's type (and precision)
        raise _Drop(INT_OUT_OF_RANGE)
    if isinstance(value, (numbers.Real, decimal.Decimal)):
        try:
            value = float(value)
        except (OverflowError, ValueError) as e:
            raise _Drop(NON_FINITE_FLOAT) from e
        if value - value != 0.0:  # NaN or an infinity: InfluxDB cannot store them
            raise _Drop(NON_FINITE_FLOAT)
        return repr(value)
    if t is str or isinstance(value, str):
        return _string_field(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _string_field(bytes(value).decode('utf-8', 'replace'))
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return _string_field(value.isoformat())
    if isinstance(value, datetime.timedelta):
        return repr(value.total_seconds())  # seconds as a float, as everywhere in buildbot_stats
    if isinstance(value, (dict, list, tuple)):
        return _string_field(_json(value))
    return _string_field(_str(value))


def _describe(kind, key) -> str:
    try:
        return f'{kind} {key!r}'
    except Exception:
        return f'{kind} of type {type(key).__name__}'


class LineEncoder:
    """Encodes points as InfluxDB line protocol (timestamps in nanoseconds).

    Tags added to every point (``extra_tags``) are not the encoder's business: they are
    merged into a point's tags by :class:`~buildbot_stats.tagging.TagPolicy` before it is
    encoded.
    """

    def __init__(self):
        self._measurements = {}  # str series name -> escaped measurement
        self._tag_keys = {}      # str -> escaped, or (reason,) when it cannot be written
        self._tag_values = {}
        self._field_keys = {}
        # (measurement, tuple(tags.items())) -> the line's head (measurement and sorted
        # tags), for tag sets of str keys and values that encoded with nothing dropped:
        # the few tag sets of a master repeat in every point
        self._heads = {}

    # -- cached name escaping: the few names of a master repeat in every point --

    @staticmethod
    def _cached(cache, name, make):
        """``make(name)``, remembered for str names. The cache holds the escaped str when the
        fast path may use it, ``[escaped]`` for a lossy name (duplicates must be checked) and
        ``(reason,)`` for a name that cannot be written (no exception object is kept)."""
        if type(name) is not str:  # 1, 1.0 and True are one dict key: never cache them
            return make(name)[0]
        result = cache.get(name)
        if result is None:
            try:
                escaped, lossy = make(name)
                result = [escaped] if lossy else escaped
            except _Drop as e:
                result = (e.args[0],)
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[name] = result
        if type(result) is tuple:
            raise _Drop(result[0])
        return result if type(result) is str else result[0]

    def _measurement(self, name):
        try:
            text = to_text(name)
            if not text:
                raise _Drop('empty')
            return _escape_name(text, _MEASUREMENT_TABLE, _MEASUREMENT_LEADERS)
        except _Drop as e:
            raise PointRejected(
                BAD_MEASUREMENT, f'series name {name!r} cannot be a measurement ({e.args[0]})'
            ) from None

    @staticmethod
    def _tag_key(key):
        return _key_lossy(key, _KEY_TABLE, ())

    @staticmethod
    def _tag_value(value):
        text = to_text(value)
        if not text:
            raise _Drop(EMPTY_TAG_VALUE)
        return _escape_name_lossy(text, _KEY_TABLE, ())

    @staticmethod
    def _field_key(key):
        return _key_lossy(key, _KEY_TABLE, _FIELD_KEY_LEADERS)

    def _careful_fields(self, items, dropped):
        """Every field's text, or a counted reason in ``dropped``; duplicate keys checked."""
        parts = []
        seen = set()
        for k, v in items:
            try:
                ek = self._cached(self._field_keys, k, self._field_key)
                if ek in seen:
                    raise _Drop(DUPLICATE_KEY)
                text = field_value(v)
            except _Drop as e:
                dropped.append((_describe('field', k), e.args[0]))
                continue
            seen.add(ek)
            parts.append(f'{ek}={text}')
        return parts

    def encode(self, series, fields, tags, timestamp_ns):
        """Returns ``(line, dropped)``: the line without a trailing newline and the list of
        ``(what, reason)`` for each field or tag left out. Raises :class:`PointRejected`.

        ``timestamp_ns`` is an int (nanoseconds since the epoch) or None (the server's time).
        """
        measurement = self._measurements.get(series) if type(series) is str else None
        if measurement is None:
            measurement = self._measurement(series)
            if type(series) is str:
                if len(self._measurements) >= _CACHE_LIMIT:
                    self._measurements.clear()
                self._measurements[series] = measurement

        if timestamp_ns is None:
            stamp = ''
        elif (type(timestamp_ns) is int or (isinstance(timestamp_ns, numbers.Integral)
                                            and not isinstance(timestamp_ns, bool))) \
                and TIME_MIN_NS <= timestamp_ns <= TIME_MAX_NS:
            stamp = f' {int(timestamp_ns)}'
        else:
            raise PointRejected(BAD_TIMESTAMP,
                                f'{series!r}: timestamp {timestamp_ns!r} is not an integer'
                                f' number of nanoseconds within +-{TIME_MAX_NS}')

        dropped = []

        # -- fields: the fast path handles str keys already seen and float/int/str/bool values
        try:
            items = fields.items()
        except AttributeError:
            raise PointRejected(BAD_FIELDS, f'{series!r}: fields must be a mapping, not'
                                            f' {type(fields).__name__}') from None
        # Fast path: every key already known to be exact (a str in the cache) and every value a
        # finite float, an int64, a str or a bool. Anything else restarts on the careful path.
        field_keys = self._field_keys
        parts = []
        append = parts.append
        for k, v in items:
            ek = field_keys.get(k) if type(k) is str else None
            if type(ek) is not str:
                parts = None
                break
            t = type(v)
            if t is float and v - v == 0.0:
                append(f'{ek}={v!r}')
            elif t is int and INT64_MIN <= v <= INT64_MAX:
                append(f'{ek}={v}i')
            elif t is str:
                if '"' in v or '\\' in v or '\n' in v:
                    v = v.translate(_STRING_TABLE)
                if not v.isascii():
                    v = _fix_surrogates(v)
                append(f'{ek}="{v}"')
            elif t is bool:
                append(f'{ek}=true' if v else f'{ek}=false')
            else:
                parts = None
                break
        if parts is None:
            parts = self._careful_fields(items, dropped)
        if not parts:
            detail = '; '.join(f'{w}: {r}' for w, r in dropped) or 'no fields given'
            raise PointRejected(NO_FIELDS, f'{series!r}: no field can be written ({detail})',
                                dropped)

        # -- tags: sorted by (escaped) key; InfluxDB rejects a line with a key twice
        if tags:
            try:
                tag_items = tags.items()
            except AttributeError:
                raise PointRejected(BAD_TAGS, f'{series!r}: tags must be a mapping, not'
                                              f' {type(tags).__name__}') from None
            # Only str tag sets are remembered (1, 1.0 and True are equal keys), so a str
            # tag set can only find the head of an equal str tag set
            head_key = (measurement, tuple(tag_items))
            try:
                head = self._heads.get(head_key)
            except TypeError:  # an unhashable value: it is dropped below
                head = head_key = None
            if head is not None:
                return f'{head} {",".join(parts)}{stamp}', dropped
            tag_keys = self._tag_keys
            tag_values = self._tag_values
            out = {}
            for k, v in tag_items:
                try:
                    ek = tag_keys.get(k) if type(k) is str else None
                    if type(ek) is not str:
                        ek = self._cached(tag_keys, k, self._tag_key)
                    ev = tag_values.get(v) if type(v) is str else None
                    if type(ev) is not str:
                        ev = self._cached(tag_values, v, self._tag_value)
                except _Drop as e:
                    dropped.append((_describe('tag', k), e.args[0]))
                    continue
                if ek in out:
                    dropped.append((_describe('tag', k), DUPLICATE_KEY))
                    continue
                out[ek] = ev
            if out:
                head = measurement + ''.join([f',{k}={out[k]}' for k in sorted(out)])
            else:
                head = measurement
            if head_key is not None and not dropped and all(
                    type(k) is str and type(v) is str for k, v in head_key[1]):
                if len(self._heads) >= _CACHE_LIMIT:
                    self._heads.clear()
                self._heads[head_key] = head
        else:
            head = measurement

        return f'{head} {",".join(parts)}{stamp}', dropped
