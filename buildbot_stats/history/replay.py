"""Replaying finished builds through a StatsService's captures and backends.

A replayed build becomes the very messages the live service consumes: the ``finished``
message of the build (the data API's build dict) and one ``yieldMetricsValue`` message per
value of the build's record (:mod:`buildbot_stats.history.builddata`). They go through the
service's own subscription table, to the subscriptions that take replayed messages (the
captures), so every capture, callback, time offset, extra tag and backend is the live one
and the points are identical. What the captures look up about the build (builder and
worker names, properties, steps, test result sets, build request, buildset) is read with
the build, in batches (:class:`~buildbot_stats.history.reader.BuildReader`), and handed to
the service's :class:`~buildbot_stats.lookups.Lookups` just before the build is dispatched.
"""

from __future__ import annotations

import time

from twisted.internet import defer
from twisted.internet import task

from buildbot_stats.messages import BUILD_FINISHED
from buildbot_stats.messages import YIELD_DATA

#: builds read per batch
BATCH_SIZE = 500
#: a backend holding more points than this is flushed before the next batch, so that a
#: replay never fills a bounded buffer (and never drops a point for lack of room)
MAX_PENDING = 20000


class ReplayResult:
    """What a replay did: builds read, builds without any recorded ``yieldMetricsValue``
    data, data values replayed, and per backend the delivery counters' change."""

    def __init__(self):
        self.builds = 0
        self.builds_without_data = 0
        self.data_values = 0
        self.bad_data = 0
        self.capture_errors = 0
        self.backends = {}
        # the most CPU time (of the reactor thread, in seconds) one run of replay work took
        # between two turns of the reactor
        self.longest_slice = 0.0
        # (change points found, withdrawn) by the change detection after a backfill, or
        # None when it did not run (docs/regressions.rst)
        self.changes = None


def finishedRoutingKey(build):
    return ('builders', str(build['builderid']), 'builds', str(build['buildid']), 'finished')


class Replayer:
    """Replays the builds a :class:`BuildReader` yields through ``service``.

    :param service: a configured :class:`~buildbot_stats.service.StatsService`
    :param reader: a :class:`~buildbot_stats.history.reader.BuildReader`
    :param reactor: runs the work in slices of ``slice_seconds`` (wall time), giving the
        reactor back in between (the catch-up uses 10 ms: the master never lags for it)
    :param progress: called with the number of builds done after each batch
    :param wait_for_backends: flush a backend that holds more than ``MAX_PENDING`` points
        before reading on (False for ``--dry-run``, where nothing is written)
    """

    def __init__(self, service, reader, reactor, slice_seconds=0.05, batch_size=BATCH_SIZE,
                 progress=None, wait_for_backends=True, max_pending=MAX_PENDING):
        self.service = service
        self.reader = reader
        self.reactor = reactor
        self.slice_seconds = slice_seconds
        self.batch_size = batch_size
        self.progress = progress
        self.wait_for_backends = wait_for_backends
        self.max_pending = max_pending
        self.result = ReplayResult()
        self._sliceStart = None
        self._stopped = False

    def stop(self):
        """Stop after the build being replayed (the master is stopping)."""
        self._stopped = True

    @defer.inlineCallbacks
    def run(self):
        svc = self.service
        result = self.result
        errors_before = svc.capture_errors
        before = {b.name: dict(b.metrics()) for b in svc.backends}
        lookups = svc.lookups
        names = yield self.reader.builderNames()
        for builderid, name in names.items():
            lookups.builder_names.put(builderid, name)
        workers = yield self.reader.workerNames()
        for workerid, name in workers.items():
            lookups.workers.put(workerid, name)
        after = 0
        self._sliceStart = time.monotonic()
        self._sliceCpu = time.thread_time()
        while not self._stopped:
            batch = yield self.reader.readBatch(after, self.batch_size)
            if not batch:
                break
            for rec in batch:
                if self._stopped:
                    break
                self.replayBuild(rec)
                result.builds += 1
                if time.monotonic() - self._sliceStart >= self.slice_seconds:
                    result.longest_slice = max(result.longest_slice,
                                               time.thread_time() - self._sliceCpu)
                    yield task.deferLater(self.reactor, 0, lambda: None)
                    self._sliceStart = time.monotonic()
                    self._sliceCpu = time.thread_time()
            after = batch[-1].build['buildid']
            yield svc.drain()
            if self.wait_for_backends:
                yield self._waitForBackends()
            if self.progress is not None:
                self.progress(result.builds)
            self._sliceStart = time.monotonic()
            self._sliceCpu = time.thread_time()
        yield svc.drain()
        result.capture_errors = svc.capture_errors - errors_before
        for b in svc.backends:
            now = b.metrics()
            result.backends[b.name] = {
                k: now.get(k, 0) - before.get(b.name, {}).get(k, 0)
                for k in ('added', 'written', 'rejected', 'dropped')}
        return result

    @defer.inlineCallbacks
    def _waitForBackends(self):
        for b in self.service.backends:
            if b.metrics().get('pending', 0) > self.max_pending:
                yield b.flush()

    def replayBuild(self, rec):
        """Dispatch the messages of one build (a :class:`BuildRecord`)."""
        svc = self.service
        build = rec.build
        buildid = build['buildid']
        lookups = svc.lookups
        lookups.properties.put(buildid, rec.properties)
        lookups.steps.put(buildid, rec.steps)
        lookups.test_result_sets.put(buildid, rec.test_result_sets)
        if rec.buildrequest is not None:
            lookups.build_requests.put(rec.buildrequest['buildrequestid'], rec.buildrequest)
            if rec.buildset is not None:
                lookups.buildsets.put(rec.buildset['bsid'], rec.buildset)
        self.result.bad_data += len(rec.bad_data)
        if not rec.data:
            self.result.builds_without_data += 1
        if svc.wantsReplayed(BUILD_FINISHED):
            svc.dispatchReplayed(BUILD_FINISHED, finishedRoutingKey(build), build)
        if svc.wantsReplayed(YIELD_DATA):
            for data_name, values in sorted(rec.data.items()):
                for timestamp, post_data in values:
                    self.result.data_values += 1
                    msg = {
                        'data_name': data_name,
                        'post_data': post_data,
                        'build_data': build,
                        'masterid': build.get('masterid'),
                        'timestamp': timestamp,
                    }
                    svc.dispatchReplayed(YIELD_DATA, YIELD_DATA, msg)
