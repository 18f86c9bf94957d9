"""The InfluxDB 2.x/3.x write path (/api/v2/write, bucket, org, token): against a real
VictoriaMetrics, which accepts that endpoint, and against a recording local server."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from buildbot_stats import stats
from tests.faultserver import FaultServer
from tests.servers import VictoriaMetricsServer

TOKEN = 'tok-3f9a-secret'


class V2WithVictoriaMetrics(unittest.TestCase):

    def setUp(self):
        self.vm = VictoriaMetricsServer.start_new()
        self.addCleanup(self.vm.cleanup)

    @defer.inlineCallbacks
    def test_points_land_through_api_v2_write(self):
        backend = stats.InfluxStorageService(
            self.vm.url, None, None, None, None, [], bucket='builds', org='ci', token=TOKEN,
            flush_interval=0.05, batch_size=100, extra_tags={'master': 'm1'})
        yield backend.startService()
        t0 = 1_700_000_000.5
        for i in range(250):
            backend.postStatsValue({'duration': float(i)}, 'alpha-build-times',
                                   {'builder_name': 'alpha', 'build_number': str(i)},
                                   t0 + i)
        ok = yield backend.flush(timeout=10)
        yield backend.stopService()
        self.assertTrue(ok)
        self.assertEqual(backend.counters.asDict(), {
            'added': 250, 'written': 250, 'rejected': 0, 'dropped': 0, 'retries': 0,
            'pending': 0})
        samples = self.vm.samples('{__name__="alpha-build-times_duration"}')
        self.assertEqual(len(samples), 250)
        # VictoriaMetrics keeps milliseconds
        self.assertEqual(sorted((int(s[0]['build_number']), s[1], s[2]) for s in samples),
                         [(i, int((t0 + i) * 1000), float(i)) for i in range(250)])
        self.assertEqual({s[0]['master'] for s in samples}, {'m1'})


class V2Requests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_url_and_token_header(self):
        server = FaultServer()
        self.addCleanup(server.stop)
        backend = stats.InfluxStorageService(
            server.url, None, None, None, None, [], bucket='my bucket', org='my org',
            token=TOKEN, flush_interval=0.05)
        yield backend.startService()
        backend.postStatsValue({'v': 1}, 'm', {}, 1.0)
        yield backend.flush(timeout=5)
        yield backend.stopService()
        path, body, headers = server.requests[0]
        self.assertEqual(body, b'm v=1i 1000000000')
        self.assertEqual(path, b'/api/v2/write')
        self.assertEqual(headers.getRawHeaders(b'authorization'), [b'Token ' + TOKEN.encode()])
        self.assertNotIn(TOKEN, repr(backend))
        self.assertEqual(backend.write_url.split('?')[1],
                         'bucket=my+bucket&precision=ns&org=my+org')
