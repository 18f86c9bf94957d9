"""The encoding table and a hypothesis sample, written to a real InfluxDB 1.x and read back:
every value, tag and exact nanosecond timestamp must be what the table documents."""

from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from twisted.trial import unittest

from buildbot_stats.delivery.lineprotocol import LineEncoder
from buildbot_stats.delivery.lineprotocol import PointRejected
from buildbot_stats.tagging import TagPolicy
from tests import lineproto_model as model
from tests.lineproto_model import Rejected
from tests.servers import InfluxDB1Server
from tests.test_lineprotocol import table_points

INFLUX_TYPES = {bool: 'boolean', int: 'integer', float: 'float', str: 'string'}


class RoundTripMixin:
    def setUp(self):
        self.server = InfluxDB1Server.shared()

    def assertStored(self, db, measurement, tags, fields, ts, context):
        points = self.server.read_points(db, measurement)
        self.assertEqual(len(points), 1, f'{context}: {points}')
        p = points[0]
        if ts is not None:
            self.assertEqual(p['time'], ts, context)
        self.assertEqual(p['tags'], tags, context)
        # Go writes a float as its shortest digits, without a dot when it is integral (3.0 -> 3,
        # 6.549993210899006e16 -> 65499932108990060): read those back as floats, exactly
        got = {k: float(v) if isinstance(fields.get(k), float) and type(v) is int else v
               for k, v in p['fields'].items()}
        self.assertEqual(got, fields, context)
        # the declared types prove that an int stayed an int and a float a float
        self.assertEqual(self.server.field_types(db, measurement),
                         {k: INFLUX_TYPES[type(v)] for k, v in fields.items()}, context)


class TableRoundTripTest(RoundTripMixin, unittest.TestCase):
    def test_every_table_row(self):
        db = 'table'
        self.server.create_database(db)
        encoder = LineEncoder()
        lines, checks = [], []
        for row_id, series, fields, tags, ts, exp in table_points():
            if isinstance(exp, Rejected):
                continue
            line, _ = encoder.encode(series, fields, tags, ts)
            lines.append(line)
            checks.append((row_id, line, exp))
        self.assertGreater(len(checks), 40)
        self.server.write_lines(db, lines)  # one batch: 204 means every line was accepted
        self.maxDiff = None
        self.assertEqual(sorted(self.server.measurements(db)), sorted(e[0] for _, _, e in checks))
        for row_id, line, (measurement, tags, fields, ts, _) in checks:
            self.assertStored(db, measurement, tags, fields, ts, f'row {row_id}: {line!r}')

    def test_hash_measurement_is_not_a_comment(self):
        # without the backslash influxd answers 204 and stores nothing: a silent loss
        db = 'hash'
        self.server.create_database(db)
        self.server.write_lines(db, '#plain v=1i 1')
        self.assertEqual(self.server.measurements(db), [])
        line, _ = LineEncoder().encode('#1 nightly', {'v': 1}, None, 1)
        self.server.write_lines(db, line)
        self.assertEqual(self.server.measurements(db), ['\\#1 nightly'])

    def test_what_we_drop_the_server_refuses(self):
        # the reasons in the table are real: each of these lines makes influxd refuse the point
        db = 'refused'
        self.server.create_database(db)
        for line in ['m v=NaN 1', 'm v=inf 1', 'm v=9223372036854775808i 1', 'm,t= v=1i 1',
                     'm time=1i 1', 'm,time=x v=1i 1', 'm,t=x\\ v=1i 1', 'm\\ v=1i 1',
                     'm v=1i 9223372036854775807', 'm,a=1,a=2 v=1i 1', 'm k\\=1i 1']:
            status, body = self.server.write_raw(db, line)
            self.assertEqual(status, 400, f'{line!r}: {body}')


class SampleRoundTripTest(RoundTripMixin, unittest.TestCase):
    """200 hypothesis examples encoded, written as ONE batch, then read back one by one."""

    def test_hypothesis_sample(self):
        examples = []

        @settings(max_examples=200, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(series=model.nasty_text,
               fields=st.dictionaries(model.nasty_text, model.server_scalars, min_size=1,
                                      max_size=5),
               tags=st.dictionaries(model.nasty_text, model.nasty_text, max_size=3),
               ts=st.one_of(st.sampled_from([model_min(), model_max(), 0, -1]),
                            st.integers(1_700_000_000_000_000_000, 1_700_000_100_000_000_000)))
        def collect(series, fields, tags, ts):
            examples.append((series, fields, tags, ts))

        collect()
        self.assertEqual(len(examples), 200)
        db = 'sample'
        self.server.create_database(db)
        encoder = LineEncoder()
        extra = TagPolicy({'master': 'test master'})
        lines, checks = [], []
        rejected = 0
        for i, (series, fields, tags, ts) in enumerate(examples):
            series = f'{series}~{i}'  # one measurement per example: no type clash, no overwrite
            tags = extra.addExtraTags(tags)
            exp = model.expected(series, fields, tags, ts)
            try:
                line, _ = encoder.encode(series, fields, tags, ts)
            except PointRejected as e:
                self.assertIsInstance(exp, Rejected)
                self.assertEqual(e.reason, exp.reason)
                rejected += 1
                continue
            lines.append(line)
            checks.append((line, exp))
        self.assertEqual(len(lines) + rejected, 200)
        self.assertGreater(len(lines), 60)
        self.server.write_lines(db, lines)
        self.assertEqual(len(self.server.measurements(db)), len(lines))
        for line, (measurement, tags, fields, ts, _) in checks:
            self.assertStored(db, measurement, tags, fields, ts, repr(line))


def model_min():
    from buildbot_stats.delivery.lineprotocol import TIME_MIN_NS
    return TIME_MIN_NS


def model_max():
    from buildbot_stats.delivery.lineprotocol import TIME_MAX_NS
    return TIME_MAX_NS
