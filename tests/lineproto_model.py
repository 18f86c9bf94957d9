"""Test-side model of the encoding table: a strict line parser, the documented value of every
input (an oracle written from docs/encoding-table.rst.inc, independent of the fast path), the
table rows themselves and hypothesis strategies. Used by test_lineprotocol and
test_lineprotocol_influxdb."""

import datetime
import decimal
import json
import math
import numbers
import re

from hypothesis import strategies as st

from buildbot_stats.delivery.lineprotocol import TIME_MAX_NS
from buildbot_stats.delivery.lineprotocol import TIME_MIN_NS

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


class ParseError(AssertionError):
    pass


# -- strict parser: what influxd 1.6 stores for a line our encoder may produce --------------

def _scan_name(line, i, escapable, terminators, forbidden, no_backslash_before=''):
    """Read one name starting at i; returns (stored text, index of its terminator or len)."""
    out = []
    n = len(line)
    start = i
    while i < n:
        c = line[i]
        if c == '\\':
            if i + 1 >= n:
                raise ParseError(f'dangling backslash at {i} in {line!r}')
            d = line[i + 1]
            if d in escapable:
                out.append(d)
                i += 2
                continue
            if d in no_backslash_before:
                raise ParseError(f'backslash before {d!r} at {i} in {line!r}')
            if d == '\\' and (i + 2 >= n or line[i + 2] in escapable or line[i + 2] in terminators
                              or line[i + 2] in no_backslash_before):
                raise ParseError(f'ambiguous backslashes at {i} in {line!r}')
            out.append('\\')  # literal; the next character is read normally
            i += 1
            continue
        if c in terminators:
            break
        if c in forbidden:
            raise ParseError(f'unescaped {c!r} at {i} in {line!r}')
        out.append(c)
        i += 1
    if i == start:
        raise ParseError(f'empty name at {i} in {line!r}')
    return ''.join(out), i


_INT = re.compile(r'-?(0|[1-9][0-9]*)i\Z')
_FLOAT = re.compile(r'-?[0-9]+(\.[0-9]+)?(e[+-][0-9]+)?\Z')
_TIME = re.compile(r'-?(0|[1-9][0-9]*)\Z')


def _scan_field_value(line, i):
    n = len(line)
    if i < n and line[i] == '"':
        out = []
        i += 1
        while True:
            if i >= n:
                raise ParseError(f'unterminated string in {line!r}')
            c = line[i]
            if c == '"':
                return ''.join(out), i + 1
            if c == '\\':
                d = line[i + 1] if i + 1 < n else ''
                if d in ('\\', '"'):
                    out.append(d)
                elif d == 'n':
                    out.append('\\n')  # InfluxDB keeps both characters
                else:
                    raise ParseError(f'bad escape {d!r} in string in {line!r}')
                i += 2
                continue
            out.append(c)
            i += 1
    j = i
    while j < n and line[j] not in ', ':
        j += 1
    token = line[i:j]
    if token in ('true', 'false'):
        return token == 'true', j
    if _INT.match(token):
        v = int(token[:-1])
        if not INT64_MIN <= v <= INT64_MAX:
            raise ParseError(f'int out of range {token}')
        return v, j
    if _FLOAT.match(token):
        v = float(token)
        if not math.isfinite(v):
            raise ParseError(f'non-finite float {token}')
        return v, j
    raise ParseError(f'bad field value {token!r} in {line!r}')


def parse_line(line):
    """(measurement, tags, fields, timestamp or None) as InfluxDB 1.6 stores them. Strict:
    raises ParseError for anything our encoder must never produce."""
    if '\n' in line:
        raise ParseError(f'raw newline in {line!r}')
    line.encode('utf-8')  # no lone surrogates
    if not line or line[0] in '#\t\x00 ':
        raise ParseError(f'line starts with a character InfluxDB skips: {line!r}')
    measurement, i = _scan_name(line, 0, ', ', ', ', '')
    tags = {}
    if i >= len(line):
        raise ParseError(f'no fields in {line!r}')
    while line[i] == ',':
        key, i = _scan_name(line, i + 1, ', =', '=', ', ')
        if i >= len(line) or line[i] != '=':
            raise ParseError(f'tag without value in {line!r}')
        value, i = _scan_name(line, i + 1, ', =', ', ', '=')
        if key in tags or key == 'time':
            raise ParseError(f'bad tag key {key!r} in {line!r}')
        tags[key] = value
        if i >= len(line):
            raise ParseError(f'no fields in {line!r}')
    if i >= len(line) or line[i] != ' ':
        raise ParseError(f'expected space at {i} in {line!r}')
    i += 1
    fields = {}
    while True:
        if i < len(line) and line[i] in '\t\x00':
            raise ParseError(f'field key starts with a character InfluxDB skips: {line!r}')
        key, i = _scan_name(line, i, ', =', '=', ', ', no_backslash_before='"')
        if i >= len(line) or line[i] != '=':
            raise ParseError(f'field without value in {line!r}')
        value, i = _scan_field_value(line, i + 1)
        if key in fields or key == 'time':
            raise ParseError(f'bad field key {key!r} in {line!r}')
        fields[key] = value
        if i >= len(line):
            return measurement, tags, fields, None
        if line[i] == ',':
            i += 1
            continue
        if line[i] == ' ':
            stamp = line[i + 1:]
            if not _TIME.match(stamp) or not TIME_MIN_NS <= int(stamp) <= TIME_MAX_NS:
                raise ParseError(f'bad timestamp {stamp!r} in {line!r}')
            return measurement, tags, fields, int(stamp)
        raise ParseError(f'unexpected {line[i]!r} at {i} in {line!r}')


def escaped_tag_keys(line):
    """The tag keys as written (escaped), in order, to check they are sorted."""
    head = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == '\\':
            head.append(line[i:i + 2])
            i += 2
            continue
        if c == ' ':
            break
        head.append(c)
        i += 1
    keys = []
    parts = re.split(r'(?<!\\),', ''.join(head))
    for part in parts[1:]:
        keys.append(re.split(r'(?<!\\)=', part)[0])
    return keys


# -- the documented value of each input (docs/encoding-table.rst.inc) -----------------------

class Drop(Exception):
    pass


class Rejected:
    def __init__(self, reason):
        self.reason = reason

    def __repr__(self):
        return f'Rejected({self.reason!r})'


def fix(text):
    return ''.join('\ufffd' if '\ud800' <= c <= '\udfff' else c for c in text)


def compact_json(value):
    kw = dict(separators=(',', ':'), ensure_ascii=False, default=str)
    try:
        return json.dumps(value, sort_keys=True, **kw)
    except TypeError:
        pass
    except Exception:
        raise Drop('unconvertible')
    try:
        return json.dumps(value, **kw)
    except Exception:
        raise Drop('unconvertible')


def text_of(value):
    """A name or tag value before escaping."""
    if value is None:
        raise Drop('none')
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, numbers.Integral):
        try:
            return str(int(value))
        except ValueError:
            raise Drop('unconvertible')
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode('utf-8', 'replace')
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return repr(value.total_seconds())
    if isinstance(value, (dict, list, tuple)):
        return compact_json(value)
    try:
        return str.__str__(str(value))
    except Exception:
        raise Drop('unconvertible')


def stored_name(text, leaders=''):
    if re.search(r'\\(?:[, ="]|\Z)', text):
        raise Drop('bad-backslash')
    stored = fix(text).replace('\n', '\\n')
    if stored[:1] and stored[0] in leaders:
        stored = '\\' + stored
    return stored


def stored_key(key, leaders=''):
    text = text_of(key)
    if not text:
        raise Drop('empty-key')
    if text == 'time':
        raise Drop('reserved-key')
    return stored_name(text, leaders)


def stored_tag_value(value):
    text = text_of(value)
    if not text:
        raise Drop('empty-tag-value')
    return stored_name(text)


def stored_field(value):
    if value is None:
        raise Drop('none')
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        if INT64_MIN <= int(value) <= INT64_MAX:
            return int(value)
        raise Drop('int-out-of-range')
    if isinstance(value, (numbers.Real, decimal.Decimal)):
        try:
            f = float(value)
        except (OverflowError, ValueError):
            raise Drop('non-finite-float')
        if not math.isfinite(f):
            raise Drop('non-finite-float')
        return f
    if isinstance(value, str):
        return fix(str.__str__(value)).replace('\n', '\\n')
    if isinstance(value, (bytes, bytearray)):
        return fix(bytes(value).decode('utf-8', 'replace')).replace('\n', '\\n')
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (dict, list, tuple)):
        return fix(compact_json(value)).replace('\n', '\\n')
    try:
        return fix(str.__str__(str(value))).replace('\n', '\\n')
    except Exception:
        raise Drop('unconvertible')


def expected(series_name, fields, tags, timestamp_ns):
    """Rejected(reason), or (measurement, tags, fields, timestamp, sorted dropped)."""
    try:
        text = text_of(series_name)
        if not text:
            raise Drop('empty')
        measurement = stored_name(text, '#\t\x00')
    except Drop:
        return Rejected('bad-measurement')
    if timestamp_ns is not None and (
            isinstance(timestamp_ns, bool) or not isinstance(timestamp_ns, numbers.Integral)
            or not TIME_MIN_NS <= timestamp_ns <= TIME_MAX_NS):
        return Rejected('bad-timestamp')
    if not hasattr(fields, 'items'):
        return Rejected('bad-fields')
    dropped = []
    out_fields = {}
    for k, v in fields.items():
        try:
            key = stored_key(k, '\t\x00')
            if key in out_fields:
                raise Drop('duplicate-key')
            out_fields[key] = stored_field(v)
        except Drop as e:
            dropped.append((f'field {k!r}', e.args[0]))
    if not out_fields:
        return Rejected('no-fields')
    out_tags = {}
    if tags:
        if not hasattr(tags, 'items'):
            return Rejected('bad-tags')
        for k, v in tags.items():
            try:
                key = stored_key(k)
                value = stored_tag_value(v)
                if key in out_tags:
                    raise Drop('duplicate-key')
                out_tags[key] = value
            except Drop as e:
                dropped.append((f'tag {k!r}', e.args[0]))
    return measurement, out_tags, out_fields, timestamp_ns, sorted(dropped)


# -- hypothesis strategies ------------------------------------------------------------------

SPECIALS = ',= "\\\n\r\t\x00#\x0b\x85\u2028\ud800\udfff'

nasty_text = st.text(alphabet=st.one_of(st.characters(codec=None),
                                        st.sampled_from(SPECIALS)), max_size=12)


class Opaque:
    def __str__(self):
        return 'opaque\nobject'


class BadStr:
    def __str__(self):
        raise RuntimeError('no text')


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=INT64_MIN - 2, max_value=INT64_MIN + 2),
    st.integers(min_value=INT64_MAX - 2, max_value=INT64_MAX + 2),
    st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]),
    nasty_text, st.binary(max_size=8),
    st.datetimes(timezones=st.sampled_from([None, datetime.timezone.utc])),
    st.dates(), st.timedeltas(),
    st.decimals(), st.fractions(),
    st.builds(Opaque), st.builds(BadStr),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(nasty_text, inner, max_size=3)), max_leaves=6)
keys = st.one_of(nasty_text, nasty_text, st.integers(-3, 3), st.none(), st.booleans(),
                 st.binary(max_size=4))
tag_values = st.one_of(nasty_text, nasty_text, st.none(), st.booleans(), st.integers(),
                       st.floats(), st.binary(max_size=4))
series_names = st.one_of(nasty_text, nasty_text, nasty_text, st.none(), st.integers())
timestamps = st.one_of(
    st.none(), st.booleans(), st.floats(),
    st.integers(min_value=TIME_MIN_NS - 2, max_value=TIME_MAX_NS + 2),
    st.sampled_from([TIME_MIN_NS, TIME_MAX_NS, TIME_MIN_NS - 1, TIME_MAX_NS + 1, 0]))
fields_dicts = st.dictionaries(keys, values, max_size=6)
tag_dicts = st.one_of(st.none(), st.dictionaries(keys, tag_values, max_size=4))

# values InfluxDB gives back in JSON exactly (used for the server sample)
server_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=INT64_MIN - 1, max_value=INT64_MAX + 1),
    st.floats(), st.sampled_from([math.nan, math.inf, -0.0, 5e-324, 1.7976931348623157e308,
                                  INT64_MIN, INT64_MAX]),
    nasty_text, st.binary(max_size=8), st.datetimes(), st.timedeltas(),
    st.lists(nasty_text, max_size=2), st.builds(Opaque))
