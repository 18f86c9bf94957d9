"""Every row of docs/encoding-table.rst.inc as data: (id, series, fields, tags, timestamp_ns,
expected) where expected is Rejected(reason) or (measurement, tags, fields, dropped reasons)
as InfluxDB 1.6 stores them. Checked by the unit tests and, through the real server, by
test_lineprotocol_influxdb."""

import datetime
import decimal
import fractions
import math

from tests.lineproto_model import Opaque
from tests.lineproto_model import Rejected

TS = 1_700_000_000_123_456_789
B = '\\'


class BadStr:
    def __str__(self):
        raise RuntimeError('no text')


def f(fields, dropped=(), tags=None):
    """A row about field values: the measurement is the row id."""
    return ('FIELD', fields, tags or {}, sorted(dropped))


# (id, series, fields, tags, expected); each valid row gets its own measurement on the server
ROWS = [
    # -- field values
    ('float', None, {'v': 1.5, 'w': -0.1, 'x': 1e300, 'y': 5e-324, 'z': 3.0},
     f({'v': 1.5, 'w': -0.1, 'x': 1e300, 'y': 5e-324, 'z': 3.0})),
    ('float-max', None, {'v': 1.7976931348623157e308, 'w': -2.2250738585072014e-308},
     f({'v': 1.7976931348623157e308, 'w': -2.2250738585072014e-308})),
    ('float-nan-inf', None, {'nan': math.nan, 'inf': math.inf, 'ninf': -math.inf, 'ok': 1.0},
     f({'ok': 1.0}, [("field 'nan'", 'non-finite-float'), ("field 'inf'", 'non-finite-float'),
                     ("field 'ninf'", 'non-finite-float')])),
    ('int', None, {'v': 42, 'min': -2 ** 63, 'max': 2 ** 63 - 1, 'zero': 0},
     f({'v': 42, 'min': -2 ** 63, 'max': 2 ** 63 - 1, 'zero': 0})),
    ('int-out-of-range', None, {'big': 2 ** 63, 'small': -2 ** 63 - 1, 'ok': 1},
     f({'ok': 1}, [("field 'big'", 'int-out-of-range'), ("field 'small'", 'int-out-of-range')])),
    ('bool', None, {'t': True, 'f': False}, f({'t': True, 'f': False})),
    ('none', None, {'gone': None, 'ok': 1}, f({'ok': 1}, [("field 'gone'", 'none')])),
    ('string', None, {'s': 'plain text', 'e': ''}, f({'s': 'plain text', 'e': ''})),
    ('string-escapes', None, {'s': f'q"uote {B}back{B}slash, comma = eq', 'end': f'ends{B}',
                              'only': B, 'quote': '"'},
     f({'s': f'q"uote {B}back{B}slash, comma = eq', 'end': f'ends{B}', 'only': B, 'quote': '"'})),
    ('string-newline', None, {'s': 'line1\nline2', 'r': 'a\rb\tc\x00d'},
     f({'s': f'line1{B}nline2', 'r': 'a\rb\tc\x00d'})),
    ('string-unicode', None, {'s': 'é€😀\u2028\x85', 'sur': 'a\ud800b'},
     f({'s': 'é€😀\u2028\x85', 'sur': 'a\ufffdb'})),
    ('bytes', None, {'b': b'caf\xc3\xa9', 'bad': b'\xff\xfe', 'ba': bytearray(b'x')},
     f({'b': 'café', 'bad': '\ufffd\ufffd', 'ba': 'x'})),
    ('datetime', None, {'dt': datetime.datetime(2024, 5, 1, 10, 0, 0, 123456,
                                                tzinfo=datetime.timezone.utc),
                        'naive': datetime.datetime(2024, 5, 1, 10, 0),
                        'd': datetime.date(2024, 5, 1)},
     f({'dt': '2024-05-01T10:00:00.123456+00:00', 'naive': '2024-05-01T10:00:00',
        'd': '2024-05-01'})),
    ('timedelta', None, {'td': datetime.timedelta(minutes=1, microseconds=500)},
     f({'td': 60.0005})),
    ('json', None, {'d': {'b': [1, 2.5, None], 'a': 'x y'}, 'l': [1, 'two'], 't': (True,),
                    'nan': [math.nan]},
     f({'d': '{"a":"x y","b":[1,2.5,null]}', 'l': '[1,"two"]', 't': '[true]',
        'nan': '[NaN]'})),
    ('json-mixed-keys', None, {'d': {1: 'a', 'b': 2}}, f({'d': '{"1":"a","b":2}'})),
    ('json-unconvertible', None, {'d': {b'k': 1}, 'ok': 1},
     f({'ok': 1}, [("field 'd'", 'unconvertible')])),
    ('numbers', None, {'dec': decimal.Decimal('2.5'), 'frac': fractions.Fraction(1, 4),
                       'decnan': decimal.Decimal('NaN')},
     f({'dec': 2.5, 'frac': 0.25}, [("field 'decnan'", 'non-finite-float')])),
    ('object', None, {'o': Opaque(), 'bad': BadStr()},
     f({'o': f'opaque{B}nobject'}, [("field 'bad'", 'unconvertible')])),
    # -- field keys
    ('field-keys', None, {'a b': 1, 'c,d': 2, 'e=f': 3, 'g"h': 4, '#i': 5, f'j{B}k': 6},
     f({'a b': 1, 'c,d': 2, 'e=f': 3, 'g"h': 4, '#i': 5, f'j{B}k': 6})),
    ('field-key-bad', None, {'': 1, 'time': 2, f'end{B}': 3, f'a{B}=b': 4, f'q{B}"': 5, 'ok': 6},
     f({'ok': 6}, [("field ''", 'empty-key'), ("field 'time'", 'reserved-key'),
                   (f"field 'end{B}{B}'", 'bad-backslash'), (f"field 'a{B}{B}=b'", 'bad-backslash'),
                   (f"field 'q{B}{B}\"'", 'bad-backslash')])),
    ('field-key-newline', None, {'a\nb': 1}, f({f'a{B}nb': 1})),
    ('field-key-leading-tab', None, {'\tk': 1, '\x00n': 2}, f({f'{B}\tk': 1, f'{B}\x00n': 2})),
    ('field-key-types', None, {1: 'one', b'b': 2, None: 3},
     f({'1': 'one', 'b': 2}, [("field None", 'none')])),
    ('field-key-duplicate', None, {1: 'int', '1': 'str', 'a\nb': 1, f'a{B}nb': 2},
     f({'1': 'int', f'a{B}nb': 1}, [("field '1'", 'duplicate-key'),
                                     (f"field 'a{B}{B}nb'", 'duplicate-key')])),
    # -- tags
    ('tags', None, {'v': 1}, f({'v': 1}, tags={'b': 'x y', 'a': 'c,d=e', 'c': '#', 'd': 'q"'}),
     ),
    ('tag-values', None, {'v': 1},
     f({'v': 1}, tags={'n': '3', 'b': 'true', 'f': '2.5', 'dt': '2024-05-01T00:00:00'}),
     ),
    ('tag-dropped', None, {'v': 1},
     f({'v': 1}, [("tag 'e'", 'empty-tag-value'), ("tag 'none'", 'none'),
                  ("tag ''", 'empty-key'), ("tag 'time'", 'reserved-key'),
                  (f"tag 'bs{B}{B}'", 'bad-backslash'), ("tag 'v'", 'bad-backslash')],
       tags={'ok': 'y'})),
    ('tag-newline', None, {'v': 1}, f({'v': 1}, tags={f'k{B}n': f'a{B}nb'})),
]

# tags given for rows above (kept apart so that ROWS stays readable)
TAG_INPUTS = {
    'tags': {'b': 'x y', 'a': 'c,d=e', 'c': '#', 'd': 'q"'},
    'tag-values': {'n': 3, 'b': True, 'f': 2.5, 'dt': datetime.datetime(2024, 5, 1)},
    'tag-dropped': {'ok': 'y', 'e': '', 'none': None, '': 'x', 'time': 'x', f'bs{B}': 'x',
                    'v': f'a{B},b'},
    'tag-newline': {'k\n': 'a\nb'},
}

# rows about the measurement: (id, series, expected measurement or Rejected)
MEASUREMENTS = [
    ('plain', 'builder-build-times', 'builder-build-times'),
    ('space-comma', 'my builder,x', 'my builder,x'),
    ('equals-quote', 'a=b"c', 'a=b"c'),
    ('hash', '#1 nightly', f'{B}#1 nightly'),
    ('hash-middle', 'a#b', 'a#b'),
    ('leading-space', ' lead', ' lead'),
    ('leading-tab', '\tlead', f'{B}\tlead'),
    ('leading-nul', '\x00lead', f'{B}\x00lead'),
    ('newline', 'a\nb', f'a{B}nb'),
    ('backslash-middle', f'a{B}b', f'a{B}b'),
    ('unicode', 'é€😀', 'é€😀'),
    ('surrogate', 'x\udcff', 'x\ufffd'),
    ('int-name', 7, '7'),
    ('empty', '', Rejected('bad-measurement')),
    ('none', None, Rejected('bad-measurement')),
    ('trailing-backslash', f'ends{B}', Rejected('bad-measurement')),
    ('backslash-space', f'a{B} b', Rejected('bad-measurement')),
]

# rows about the whole point: (id, series, fields, tags, timestamp, expected Rejected / ts)
POINTS = [
    ('no-fields', 'm', {}, None, TS, Rejected('no-fields')),
    ('only-bad-fields', 'm', {'a': None, 'b': math.nan}, None, TS, Rejected('no-fields')),
    ('fields-not-mapping', 'm', [('a', 1)], None, TS, Rejected('bad-fields')),
    ('tags-not-mapping', 'm', {'a': 1}, [('t', 'v')], TS, Rejected('bad-tags')),
    ('float-timestamp', 'm', {'a': 1}, None, 1.5, Rejected('bad-timestamp')),
    ('bool-timestamp', 'm', {'a': 1}, None, True, Rejected('bad-timestamp')),
    ('timestamp-too-big', 'm', {'a': 1}, None, 2 ** 63 - 1, Rejected('bad-timestamp')),
    ('timestamp-too-small', 'm', {'a': 1}, None, -2 ** 63 + 1, Rejected('bad-timestamp')),
    ('timestamp-max', 'm', {'a': 1}, None, 2 ** 63 - 2, 2 ** 63 - 2),
    ('timestamp-min', 'm', {'a': 1}, None, -2 ** 63 + 2, -2 ** 63 + 2),
    ('timestamp-none', 'm', {'a': 1}, None, None, None),
]
