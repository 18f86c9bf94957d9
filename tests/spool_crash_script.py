"""Run by test_influxdb_spool: a backend that spools points for a server that is down, then
waits to be killed with SIGKILL (a master crash)."""

import sys

from twisted.internet import defer
from twisted.internet import task


@defer.inlineCallbacks
def main(reactor, url, spool_dir, n):
    from buildbot_stats import stats

    backend = stats.InfluxStorageService(url, None, None, None, 'crashdb', [],
                                         spool_dir=spool_dir, flush_interval=0.05,
                                         batch_size=100, retry_interval=5.0, jitter=0.0)
    yield backend.startService()
    for i in range(int(n)):
        backend.postStatsValue({'v': i}, 'crash', {'builder_name': 'b'}, 2000.0 + i)
    backend._writer._tick()
    yield backend._writer.spool.drain()
    print('spooled', flush=True)
    yield defer.Deferred()  # until killed


task.react(main, sys.argv[1:])
