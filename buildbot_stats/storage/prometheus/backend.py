"""PrometheusStorageService: the points of the captures as Prometheus metrics, on /metrics.

Where a point goes:

- the build statistics measurements (``builds``, ``build_requests``, ``steps``, ``tests``)
  become counters and histograms (:class:`BuildMetrics`), labelled by names, never ids;
- the seed captures' series (build times, properties, ``yieldMetricsValue`` data) become
  gauges of the last value labelled by builder (:class:`LastValueGauges`);
- the present (builds running, requests pending, workers) and the service's own counters
  are read once per scrape into immutable metric families (:class:`SnapshotCollector`).

Every metric lives in the backend's own ``CollectorRegistry``, never the global one, and
changes on the reactor thread only. A scrape reads the present (three data API reads, which
Buildbot runs in its database thread), then writes the exposition on the reactor a slice of
about 256 samples at a time, about 2 ms of work per reactor turn, streamed to the client:
the reactor serves everything else in between. (Serializing the whole registry in a thread
was measured first: the thread holds Python's interpreter lock against the reactor, which
was late by 40 to 280 ms during each scrape of a large registry; see docs/benchmarks.rst.)
What points become: :mod:`buildbot_stats.storage.prometheus.metrics`; a scrape:
:mod:`buildbot_stats.storage.prometheus.snapshot`; HTTP:
:mod:`buildbot_stats.storage.prometheus.http`; user docs: docs/storage-prometheus.rst.
"""

from __future__ import annotations

import math
import time
import zlib

from twisted.internet import defer
from twisted.internet import error
from twisted.internet import task
from twisted.python import log

from buildbot import config
from buildbot.interfaces import IRenderable
from buildbot.data import resultspec

from buildbot_stats.captures.builds import REPORT_IN_DIVISORS
from buildbot_stats.checks import aTypeName
from buildbot_stats.checks import portProblem
from buildbot_stats.checks import report
from buildbot_stats.checks import shown
from buildbot_stats.slices import cyclicGCPaused
from buildbot_stats.storage.base import StatsStorageBase
from buildbot_stats.storage.base import describeBuildOf
from buildbot_stats.storage.prometheus.http import metricsSite
from buildbot_stats.storage.prometheus.http import tokenAccess

try:
    from prometheus_client import CollectorRegistry

    from buildbot_stats.storage.prometheus.metrics import OTHER
    from buildbot_stats.storage.prometheus.metrics import BuildMetrics
    from buildbot_stats.storage.prometheus.metrics import LastValueGauges
    from buildbot_stats.storage.prometheus.snapshot import SnapshotCollector
    from buildbot_stats.storage.prometheus.snapshot import changeFamilies
    from buildbot_stats.storage.prometheus.snapshot import buildersOfMaster
    from buildbot_stats.storage.prometheus.snapshot import slicedExposition
    from buildbot_stats.storage.prometheus.snapshot import healthFamilies
    from buildbot_stats.storage.prometheus.snapshot import presentFamilies
    from buildbot_stats.storage.prometheus.snapshot import testFamilies
except ImportError:  # pragma: no cover - reported by checkConfig
    CollectorRegistry = None

#: Default port of the own HTTP server (the one buildbot-prometheus uses).
DEFAULT_PORT = 9101
#: Default interface: loopback only; Prometheus on another host needs ``interface=''``.
DEFAULT_INTERFACE = '127.0.0.1'
#: Default histogram buckets, seconds: CI durations, from seconds to hours (+Inf added).
DEFAULT_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
#: Tags of the build statistics points that ``labels=[...]`` may add as labels.
KNOWN_LABELS = ('worker', 'branch', 'repository', 'project')
#: A point whose time is this many seconds older than the backend's start is history
#: (a replay, a catch-up): counters and histograms count what happened since the start.
HISTORY_MARGIN = 5.0

BUILD_MEASUREMENTS = ('builds', 'build_requests', 'steps', 'tests')
#: Seconds of exposition work a scrape does per reactor turn, at most about (one slice
#: more): the reactor serves everything else in between.
STEP_BUDGET = 0.002


class _Budget:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def __call__(self):
        return time.monotonic() >= self.end


def checkBuckets(owner, name, buckets):
    """``config.error`` unless ``buckets`` is a non-empty increasing list of positive
    numbers (a last ``float('inf')`` allowed); returns them as a tuple or None."""
    what = (f"{owner}: {name} must be a non-empty list of increasing positive numbers of "
            f"seconds")
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, (list, tuple)) \
            or not buckets:
        got = 'an empty list' if isinstance(buckets, (list, tuple)) else shown(buckets)
        config.error(f"{what}, got {got}")
        return None
    previous = 0
    for bound in buckets:
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) \
                or math.isnan(bound) or bound <= previous:
            config.error(f"{what}; the bound {shown(bound)} is not (after "
                         f"{shown(previous)})")
            return None
        previous = bound
    return tuple(buckets)


def checkLabels(owner, labels):
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        config.error(f"{owner}: labels must be a list of tag names, got {shown(labels)}")
        return
    for label in labels:
        if label not in KNOWN_LABELS:
            config.error(f"{owner}: labels: unknown label {shown(label)}; known: "
                         f"{', '.join(KNOWN_LABELS)} (builder, result and step are always "
                         "there)")
    known = [label for label in labels if label in KNOWN_LABELS]
    if len(set(known)) != len(known):
        config.error(f"{owner}: labels: a label is named twice")


class PrometheusStorageService(StatsStorageBase):
    """Exposes the points of its captures as Prometheus metrics on ``/metrics``.

    :param port: TCP port of its own HTTP server (default 9101); ``None``: no own server
        (serve it under Buildbot's web server, see the docs)
    :param interface: the address to listen on (default ``'127.0.0.1'``: loopback only;
        ``''`` for every interface)
    :param captures: the captures whose points become metrics; ``None`` means
        ``CaptureBuildResults()``, ``CaptureQueueTimes()``, ``CaptureStepTimes()`` and
        ``CaptureTestResults()`` for every builder
    :param buckets: histogram bounds in seconds of build duration, queue and turnaround
        time (default :data:`DEFAULT_BUCKETS`, 1 s to 4 h)
    :param step_buckets: histogram bounds of step durations (default: ``buckets``)
    :param labels: tags of the build statistics points added as labels (default none;
        any of ``worker``, ``branch``, ``repository``, ``project``)
    :param token: a token a scrape must present (``Authorization: Bearer <token>``, or
        as the password of basic auth), a string or ``util.Secret(...)``; default None:
        the own port answers every request (it listens on the loopback only by default).
        ``/plugins/metrics`` takes it too.
    :param name: the backend name (default ``'PrometheusStorageService'``)
    """

    # its metrics are counts and last values, not points: change points are not written
    # here (the open slowdowns are a gauge of the scrape instead)
    keepsPoints = False
    # rendered by Buildbot before reconfigService, never logged
    secrets = ['token']

    def checkConfig(self, port=DEFAULT_PORT, interface=DEFAULT_INTERFACE, captures=None,
                    buckets=DEFAULT_BUCKETS, step_buckets=None, labels=(), *, token=None):
        owner = self.describeForConfig()
        if CollectorRegistry is None:
            config.error(f"{owner}: the prometheus_client package is not installed "
                         "(pip install 'buildbot_stats[prometheus]')")
        report(owner, portProblem('port', port, none_means="no server of its own"))
        if not isinstance(interface, str):
            config.error(f"{owner}: interface must be an address string ('' for every "
                         f"interface), got {shown(interface)}")
        # captures: checked by StatsStorageBase
        checkBuckets(owner, 'buckets', buckets)
        if step_buckets is not None:
            checkBuckets(owner, 'step_buckets', step_buckets)
        checkLabels(owner, labels)
        if token is not None and not IRenderable.providedBy(token) and (
                not isinstance(token, str) or not token.strip()):
            # the value itself is not shown: it is a secret
            config.error(f"{owner}: token must be a non-empty string or a secret "
                         f"(util.Secret), got {aTypeName(token)}")
        self._checkDurationUnits(owner, captures)

    def _checkDurationUnits(self, owner, captures):
        durations = self._durationCaptures(captures)
        for i, a in enumerate(durations):
            for b in durations[i + 1:]:
                overlap = (a._builder_name is None or b._builder_name is None
                           or a._builder_name == b._builder_name)
                if overlap and a._report_in != b._report_in:
                    config.error(
                        f"{owner}: {a.describe()} and {b.describe()} write the same series "
                        "in different units; a gauge has one unit: keep one of them in "
                        "this backend's captures")

    @staticmethod
    def _durationCaptures(captures):
        from buildbot_stats.captures.builds import CaptureBuildDuration

        if not isinstance(captures, (list, tuple)):
            return []
        return [c for c in captures if isinstance(c, CaptureBuildDuration)]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.capturesArgument() is None:
            self.captures = self.defaultCaptures()
        self.port = self.interface = self.buckets = self.step_buckets = None
        self.token = None
        self.labels = ()
        self.registry = None
        self.buildMetrics = None
        self.gauges = None
        self._present = SnapshotCollector()
        self._health = SnapshotCollector()
        self._tests = SnapshotCollector()
        self._changes = SnapshotCollector()
        self._listening = None
        self._startedAt = None
        self._scrapeLock = defer.DeferredLock()
        self._coop = None
        self._logged = set()
        self.history_ignored = 0
        self.scrapes = 0
        self.snapshot_errors = 0

    @staticmethod
    def defaultCaptures():
        """The build statistics captures, for every builder."""
        from buildbot_stats import captures

        return [captures.CaptureBuildResults(), captures.CaptureQueueTimes(),
                captures.CaptureStepTimes(), captures.CaptureTestResults()]

    @defer.inlineCallbacks
    def reconfigService(self, port=DEFAULT_PORT, interface=DEFAULT_INTERFACE, captures=None,
                        buckets=DEFAULT_BUCKETS, step_buckets=None, labels=(), *, token=None):
        self.token = token
        buckets = tuple(buckets)
        step_buckets = tuple(step_buckets) if step_buckets is not None else buckets
        labels = tuple(labels)
        if self.registry is None or (buckets, step_buckets, labels) != (
                self.buckets, self.step_buckets, self.labels):
            # new buckets or labels are new metrics: they start at 0, as after a restart
            self._newRegistry(buckets, step_buckets, labels)
        self.buckets, self.step_buckets, self.labels = buckets, step_buckets, labels
        if (port, interface) != (self.port, self.interface) or self._listening is None:
            yield self._stopListening()
            self.port, self.interface = port, interface
            self._listen()

    def _newRegistry(self, buckets, step_buckets, labels):
        registry = CollectorRegistry(auto_describe=True)
        self.buildMetrics = BuildMetrics(registry, buckets, step_buckets, labels)
        self.gauges = LastValueGauges(registry, self._durationDivisor, self._keepLabel)
        registry.register(self._present)
        registry.register(self._tests)
        registry.register(self._changes)
        registry.register(self._health)
        self.registry = registry

    # -- its own HTTP server --------------------------------------------------------------

    def _listen(self):
        if self.port is None or self.master is None:
            return
        try:
            self._listening = self.master.reactor.listenTCP(
                self.port, metricsSite(lambda: self, tokenAccess(lambda: self.token)),
                interface=self.interface)
        except error.CannotListenError as e:
            self._listening = None
            where = f"{self.interface or '*'}:{self.port}"
            log.msg(f"buildbot_stats: error: {self.name}: cannot serve /metrics on {where}: "
                    f"{e.socketError}; the master keeps running without it (choose another "
                    f"port=...)")

    @property
    def listeningPort(self):
        """The TCP port /metrics is served on, or None."""
        return self._listening.getHost().port if self._listening is not None else None

    def _stopListening(self):
        listening, self._listening = self._listening, None
        if listening is None:
            return defer.succeed(None)
        return defer.maybeDeferred(listening.stopListening)

    def startService(self):
        self._startedAt = self.master.reactor.seconds() if self.master is not None else None
        return super().startService()

    @defer.inlineCallbacks
    def stopService(self):
        yield self._stopListening()
        if self._coop is not None:
            # a scrape still writing ends (its client gets a cut answer)
            self._coop.stop()
            self._coop = None
        yield super().stopService()

    # -- points --------------------------------------------------------------------------

    def postStatsValue(self, post_data, series_name, context=None, timestamp=None):
        self.counters.added += 1
        if self.registry is None:
            self._newRegistry(DEFAULT_BUCKETS, DEFAULT_BUCKETS, ())
        tags = context or {}
        if (timestamp is not None and self._startedAt is not None
                and timestamp < self._startedAt - HISTORY_MARGIN):
            # counters count since the start; history lives in InfluxDB or SQLite
            self.history_ignored += 1
            self.counters.rejected += 1
            return
        try:
            if series_name in BUILD_MEASUREMENTS:
                used = self.buildMetrics.record(series_name, tags, post_data, timestamp)
                problems = [] if used else [f"no field these metrics use in {sorted(post_data)}"]
            else:
                used, problems = self.gauges.record(series_name, tags, post_data)
        except ValueError as e:  # a metric name clash, a bad label
            used, problems = False, [str(e)]
        if problems:
            # the build statistics carry the build number as a field
            where = dict(tags)
            where.setdefault('build_number', post_data.get('build_number'))
            self._logOnce(series_name, where, problems)
        # a point is written when any of its values is exposed
        if used:
            self.counters.written += 1
        else:
            self.counters.rejected += 1

    def postTestResults(self, run, cases):
        """Count one build's test results by builder and outcome
        (``buildbot_test_cases_total``); test names never become labels."""
        n = len(cases)
        self.counters.added += n
        if self.registry is None:
            self._newRegistry(DEFAULT_BUCKETS, DEFAULT_BUCKETS, ())
        if (self._startedAt is not None and run.time < self._startedAt - HISTORY_MARGIN):
            self.history_ignored += n
            self.counters.rejected += n
            return
        self.buildMetrics.recordTests(run, cases, self._keepLabel)
        self.counters.written += n

    def _logOnce(self, series_name, tags, problems):
        key = (series_name, tuple(problems))
        if key in self._logged:
            return
        if len(self._logged) < 1000:
            self._logged.add(key)
        log.msg(f"buildbot_stats: {self.name}: point of {series_name!r}"
                f"{describeBuildOf(tags)} not exposed: {'; '.join(problems)} "
                "(logged once per series and problem)")

    def _durationDivisor(self, builder):
        for cap in self._durationCaptures(self.captures):
            if cap._builder_name is None or cap._builder_name == builder:
                return REPORT_IN_DIVISORS.get(cap._report_in, 1)
        return 1

    def _keepLabel(self, label, value):
        policy = getattr(self.parent, 'tag_policy', None)
        if policy is None:
            return value
        tags, _ = policy.apply(f'prometheus:{label}', {label: value}, {})
        return tags.get(label, OTHER)

    def metrics(self):
        counters = super().metrics()
        counters['history_ignored'] = self.history_ignored
        counters['scrapes'] = self.scrapes
        counters['snapshot_errors'] = self.snapshot_errors
        return counters

    # -- a scrape ------------------------------------------------------------------------

    @defer.inlineCallbacks
    def snapshot(self):
        """Read the present and the service's counters, on the reactor."""
        master = self.master
        if master is not None and getattr(master, 'data', None) is not None:
            try:
                present = yield self._readPresent(master)
            except Exception as e:
                # the counters and histograms are still worth a scrape: the gauges of the
                # present are left out of this one
                self._present.families = []
                self.snapshot_errors += 1
                if self.snapshot_errors == 1:
                    log.err(getattr(e, 'subFailure', e), f"buildbot_stats: {self.name}: reading "
                            "the builds, requests and workers for /metrics failed (logged "
                            "once, counted in snapshot_errors)")
            else:
                self._present.families = presentFamilies(*present, master.masterid,
                                                         master.reactor.seconds())
        service = self.parent if hasattr(self.parent, 'metrics') else None
        gauges = getattr(service, 'test_gauges', None)
        if gauges is not None and master is not None:
            # the answers' side: read in a thread, at most once per gauges.max_age
            counts = yield gauges.current(master.reactor)
            self._tests.families = testFamilies(counts)
        regressions = getattr(self.parent, 'regressions', None)
        if regressions is not None:
            self._changes.families = changeFamilies(regressions.openSlowdowns(),
                                                    self._keepLabel)
        if service is not None:
            self._health.families = healthFamilies(service.metrics())
        else:
            self._health.families = healthFamilies({'backends': {self.name: self.metrics()}})

    @defer.inlineCallbacks
    def _readPresent(self, master):
        """The arguments of :func:`presentFamilies` before the master id and the time: the
        running builds, pending requests and workers from the data API; the builder names
        from the StatsService's MQ-fed lookups and the botmaster when there are (no query),
        else from the data API."""
        incomplete = resultspec.Filter('complete', 'eq', [False])
        running, pending, workers = yield defer.gatherResults([
            master.data.get(('builds',), filters=[incomplete]),
            master.data.get(('buildrequests',), filters=[
                incomplete, resultspec.Filter('claimed', 'eq', [False])]),
            master.data.get(('workers',)),
        ], consumeErrors=True)
        running, pending, workers = running or [], pending or [], workers or []
        lookups = getattr(self.parent, 'lookups', None)
        botmaster = getattr(master, 'botmaster', None)
        if lookups is not None and botmaster is not None:
            builder_names = list(botmaster.builderNames)
            ids = {b['builderid'] for b in running} | {r['builderid'] for r in pending}
            names = yield defer.gatherResults(
                [lookups.getBuilderName(i) for i in sorted(ids)], consumeErrors=True)
            name_of = dict(zip(sorted(ids), names))
        else:
            builders = yield master.data.get(('builders',))
            builder_names, name_of = buildersOfMaster(builders or [], master.masterid)
        return builder_names, name_of, running, pending, workers

    def sources(self):
        """What a scrape writes, in this order: the build statistics, the last-value
        gauges, the present, the tests' counts, the open slowdowns, the health."""
        return (list(self.buildMetrics.families) + list(self.gauges.gauges.values())
                + [self._present, self._tests, self._changes, self._health])

    def _cooperator(self):
        if self._coop is None:
            reactor = self.master.reactor
            self._coop = task.Cooperator(
                terminationPredicateFactory=lambda: _Budget(STEP_BUDGET),
                scheduler=lambda work: reactor.callLater(0, work))
        return self._coop

    @defer.inlineCallbacks
    def scrape(self, accept=None, accept_encoding=None, start=None, write=None):
        """One scrape, on the reactor, one at a time: the snapshot, then the exposition a
        slice of a few milliseconds at a time (:func:`slicedExposition`), gzip-compressed
        when ``accept_encoding`` allows.

        ``start(headers)`` is called once before the first ``write(piece)`` (each piece
        bytes); the Deferred fires with the headers when the last piece was written. With
        no ``write``, it fires with ``(body, headers)``. A ``write`` that raises stops the
        scrape (the client went away).
        """
        yield self._scrapeLock.acquire()
        try:
            if self.registry is None:
                self._newRegistry(DEFAULT_BUCKETS, DEFAULT_BUCKETS, ())
            yield self.snapshot()
            self.scrapes += 1
            headers, pieces = slicedExposition(self.sources(), accept)
            compressor = None
            if 'gzip' in (accept_encoding or ''):
                compressor = zlib.compressobj(5, zlib.DEFLATED, 31)
                headers['Content-Encoding'] = 'gzip'
            collected = []
            out = collected.append if write is None else write
            if start is not None:
                start(headers)

            def steps():
                while True:
                    with cyclicGCPaused():
                        piece = next(pieces, None)
                    if piece is None:
                        break
                    if compressor is not None:
                        piece = compressor.compress(piece)
                    if piece:
                        out(piece)
                    yield None
                if compressor is not None:
                    out(compressor.flush())

            yield self._cooperator().cooperate(steps()).whenDone()
        finally:
            self._scrapeLock.release()
        if write is None:
            return b''.join(collected), headers
        return headers
