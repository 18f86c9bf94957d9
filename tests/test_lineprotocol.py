"""LineEncoder: every row of the encoding table, and properties over arbitrary input."""

import math

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from twisted.trial import unittest

from buildbot_stats.delivery.lineprotocol import LineEncoder
from buildbot_stats.delivery.lineprotocol import PointRejected
from buildbot_stats.tagging import TagPolicy
from tests import lineproto_model as model
from tests.lineproto_model import ParseError
from tests.lineproto_model import Rejected
from tests.lineproto_model import escaped_tag_keys
from tests.lineproto_model import parse_line
from tests.lineproto_table import MEASUREMENTS
from tests.lineproto_table import POINTS
from tests.lineproto_table import ROWS
from tests.lineproto_table import TAG_INPUTS
from tests.lineproto_table import TS

KNOWN_POINT_REASONS = {'bad-measurement', 'bad-timestamp', 'bad-fields', 'bad-tags', 'no-fields'}
KNOWN_DROP_REASONS = {'none', 'empty-key', 'reserved-key', 'duplicate-key', 'bad-backslash',
                      'empty-tag-value', 'int-out-of-range', 'non-finite-float', 'unconvertible'}


def table_points():
    """(id, series, fields, tags, ts, expected (measurement, tags, fields, ts, dropped) or
    Rejected) for every table row."""
    out = []
    for row_id, _, fields, expect in ROWS:
        _, exp_fields, exp_tags, dropped = expect
        out.append((row_id, f'row-{row_id}', fields, TAG_INPUTS.get(row_id, {}), TS,
                    (f'row-{row_id}', exp_tags, exp_fields, TS, dropped)))
    for row_id, series, expect in MEASUREMENTS:
        exp = expect if isinstance(expect, Rejected) else (expect, {}, {'v': 1}, TS, [])
        out.append((f'measurement-{row_id}', series, {'v': 1}, None, TS, exp))
    for row_id, series, fields, tags, ts, expect in POINTS:
        if not isinstance(expect, Rejected):
            series = f'point-{row_id}'  # its own measurement on the server
            expect = (series, {}, {'a': 1}, expect, [])
        out.append((f'point-{row_id}', series, fields, tags, ts, expect))
    return out


class TableTest(unittest.TestCase):
    """Each row written out by hand; the oracle of the property tests must agree with it."""

    def check(self, row_id, series, fields, tags, ts, exp, encoder=None):
        encoder = encoder or LineEncoder()
        self.assertEqual(repr(model.expected(series, fields, tags, ts)), repr(exp),
                         f'oracle disagrees with the table on row {row_id}')
        if isinstance(exp, Rejected):
            with self.assertRaises(PointRejected, msg=row_id) as cm:
                encoder.encode(series, fields, tags, ts)
            self.assertEqual(cm.exception.reason, exp.reason, row_id)
            self.assertTrue(str(cm.exception), row_id)
            return
        line, dropped = encoder.encode(series, fields, tags, ts)
        self.assertEqual(parse_line(line), exp[:4], f'row {row_id}: {line!r}')
        self.assertEqual(sorted(dropped), exp[4], row_id)

    def test_rows(self):
        rows = table_points()
        self.assertGreater(len(rows), 50)
        for row in rows:
            self.check(*row)

    def test_rows_twice_with_warm_caches(self):
        # the second encode of the same names goes through the cached fast path
        encoder = LineEncoder()
        for _ in range(3):
            for row in table_points():
                self.check(*row, encoder=encoder)

    def test_exact_lines(self):
        e = LineEncoder()
        self.assertEqual(
            e.encode('b-build-times', {'start-time': '2024-05-01T10:00:00+00:00',
                                       'duration': 1.5, 'n': 3, 'ok': True},
                     {'builder_name': 'my builder', 'build_number': '12'}, TS),
            ('b-build-times,build_number=12,builder_name=my\\ builder '
             'start-time="2024-05-01T10:00:00+00:00",duration=1.5,n=3i,ok=true '
             f'{TS}', []))
        self.assertEqual(e.encode('#m', {'\tk': 'a"b\\c\nd'}, None, None),
                         ('\\#m \\\tk="a\\"b\\\\c\\nd"', []))
        self.assertEqual(e.encode('m', {'f': 0.1}, {'a,b': 'c=d e'}, 0),
                         ('m,a\\,b=c\\=d\\ e f=0.1 0', []))

    def test_tags_sorted_by_key(self):
        e = LineEncoder()
        tags = TagPolicy({'m': 'x', 'a': 'y'}).addExtraTags(
            {'z': '1', 'b': '2', 'B': '3', 'é': '4'})
        line, _ = e.encode('m', {'v': 1}, tags, 1)
        self.assertEqual(line, 'm,B=3,a=y,b=2,m=x,z=1,é=4 v=1i 1')

    def test_a_remembered_tag_set_gives_the_line_a_fresh_encoder_gives(self):
        e = LineEncoder()
        cases = [{'t': '1'}, {'t': 1}, {'t': True}, {'t': 1.0}, {'t': '1'}, {'t': True},
                 {'a': '', 'b': 'x'}, {'a': '', 'b': 'x'}, {'b': 'x', 'a': 'y'},
                 {'a': 'y', 'b': 'x'}, {'t': ['unhashable']}, {'t': ['unhashable']}]
        for tags in cases:
            self.assertEqual(e.encode('m', {'v': 1}, tags, 1),
                             LineEncoder().encode('m', {'v': 1}, tags, 1), repr(tags))
        self.assertEqual(e.encode('m', {'v': 1}, {'a': '', 'b': 'x'}, 1),
                         ('m,b=x v=1i 1', [("tag 'a'", 'empty-tag-value')]))

    def test_extra_tags(self):
        # extra tags are TagPolicy's: merged into the point's tags, then encoded
        e = LineEncoder()
        extra = TagPolicy({'master': 'm 1', 'n': 2})
        self.assertEqual(e.encode('s', {'v': 1}, extra.addExtraTags(None), 5),
                         ('s,master=m\\ 1,n=2 v=1i 5', []))
        # the point's own tag wins over an extra tag of the same key
        self.assertEqual(e.encode('s', {'v': 1}, extra.addExtraTags({'master': 'own'}), 5),
                         ('s,master=own,n=2 v=1i 5', []))
        # an empty point tag does not hide the extra tag
        self.assertEqual(e.encode('s', {'v': 1}, extra.addExtraTags({'master': ''}), 5),
                         ('s,master=m\\ 1,n=2 v=1i 5', []))

    def test_no_fields_message_lists_reasons(self):
        with self.assertRaises(PointRejected) as cm:
            LineEncoder().encode('m', {'a': None, 'b': math.inf}, None, 1)
        self.assertEqual(cm.exception.reason, 'no-fields')
        self.assertEqual(cm.exception.dropped, [("field 'a'", 'none'),
                                                ("field 'b'", 'non-finite-float')])
        self.assertIn("field 'b': non-finite-float", str(cm.exception))

    def test_cached_drop_is_reported_every_time(self):
        e = LineEncoder()
        for _ in range(3):
            self.assertEqual(e.encode('m', {'time': 1, 'v': 2}, {'t\\': 'x'}, 1),
                             ('m v=2i 1', [("field 'time'", 'reserved-key'),
                                           ("tag 't\\\\'", 'bad-backslash')]))

    def test_bool_is_not_int_and_int_is_not_float(self):
        e = LineEncoder()
        self.assertEqual(e.encode('m', {'a': True, 'b': 1, 'c': 1.0}, None, 1),
                         ('m a=true,b=1i,c=1.0 1', []))
        # 1, 1.0 and True are one dict key: the key cache must not confuse them
        self.assertEqual(e.encode('m', dict([(True, 1), (1.0, 2)]), None, 1)[0], 'm true=2i 1')
        self.assertEqual(e.encode('m', {1.0: 1}, None, 1)[0], 'm 1.0=1i 1')

    def test_name_caches_are_bounded(self):
        from buildbot_stats.delivery import lineprotocol
        e = LineEncoder()
        for i in range(lineprotocol._CACHE_LIMIT + 10):
            e.encode(f'm{i}', {f'k{i}': 1}, {'t': f'v{i}'}, 1)
        self.assertLessEqual(len(e._measurements), lineprotocol._CACHE_LIMIT)
        self.assertLessEqual(len(e._field_keys), lineprotocol._CACHE_LIMIT)
        self.assertLessEqual(len(e._tag_values), lineprotocol._CACHE_LIMIT)


class ParserTest(unittest.TestCase):
    """The strict test parser must itself reject what InfluxDB would misread."""

    def test_rejects(self):
        for line in ['#m v=1i', 'm v=1i\n', '\tm v=1i', 'm', 'm v=1i,v=2i', 'm,t= v=1i',
                     'm,a=1,a=2 v=1i', 'm v=inf', 'm v=9223372036854775808i', 'm\\ v=1i',
                     'm,t=a\\\\,u=b v=1i', 'm v="a\\b"', 'm time=1i', 'm v=1i 1.5',
                     'm v=1i 9223372036854775807', 'm k\\"=1i', 'm \tk=1i', 'm v="x']:
            with self.assertRaises(ParseError, msg=repr(line)):
                parse_line(line)

    def test_accepts(self):
        self.assertEqual(parse_line('a\\ b\\,c=d,t\\=k=v\\,w "k"\\ x="q\\"\\\\\\n",i=-1i 5'),
                         ('a b,c=d', {'t=k': 'v,w'}, {'"k" x': 'q"\\\\n', 'i': -1}, 5))


def check_property(testcase, series, fields, tags, ts, extra=None):
    if extra is not None:
        tags = TagPolicy(extra).addExtraTags(tags)
    exp = model.expected(series, fields, tags, ts)
    encoder = LineEncoder()
    try:
        line, dropped = encoder.encode(series, fields, tags, ts)
    except PointRejected as e:
        testcase.assertIn(e.reason, KNOWN_POINT_REASONS)
        testcase.assertIsInstance(exp, Rejected, f'unexpected rejection {e}')
        testcase.assertEqual(e.reason, exp.reason, str(e))
        testcase.assertTrue(str(e))
        return None
    if isinstance(exp, Rejected):
        testcase.fail(f'expected {exp}, got {line!r}')
    testcase.assertNotIn('\n', line)
    line.encode('utf-8')
    testcase.assertEqual(parse_line(line), exp[:4], repr(line))
    keys = escaped_tag_keys(line)
    testcase.assertEqual(keys, sorted(keys))
    testcase.assertEqual(sorted(dropped), exp[4])
    for _, reason in dropped:
        testcase.assertIn(reason, KNOWN_DROP_REASONS)
    # the same point again (warm caches, fast path) gives the same answer
    testcase.assertEqual(encoder.encode(series, fields, tags, ts), (line, dropped))
    return line


class PropertyTest(unittest.TestCase):
    @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(series=model.series_names, fields=model.fields_dicts, tags=model.tag_dicts,
           ts=model.timestamps)
    def test_any_point_is_a_valid_line_or_a_known_rejection(self, series, fields, tags, ts):
        check_property(self, series, fields, tags, ts)

    @settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(series=model.nasty_text, fields=model.fields_dicts, tags=model.tag_dicts)
    def test_with_extra_tags(self, series, fields, tags):
        check_property(self, series, fields, tags, TS, extra={'master': 'm 1', 'z,=': 'q'})

    @settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(series=model.nasty_text, key=model.nasty_text, value=model.nasty_text)
    def test_nasty_names_and_strings(self, series, key, value):
        check_property(self, series, {key: value, 'n': 1}, {key: value}, TS)
