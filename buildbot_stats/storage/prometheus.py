"""PrometheusStorageService: the points of the captures as Prometheus metrics, on /metrics.

Where a point goes:

- the build statistics measurements (``builds``, ``build_requests``, ``steps``, ``tests``)
  become counters and histograms (:class:`BuildMetrics`), labelled by names, never ids;
- the seed captures' series (build times, properties, ``yieldMetricsValue`` data) become
  gauges of the last value labelled by builder (:class:`LastValueGauges`);
- the present (builds running, requests pending, workers) and the service's own counters
  are read once per scrape, on the reactor, into an immutable snapshot
  (:class:`SnapshotCollector`).

Every metric lives in the backend's own ``CollectorRegistry``, never the global one. A
scrape takes the snapshot on the reactor (a few data API reads, which Buildbot runs in its
database thread) and serializes the registry in a thread: prometheus_client's values are
guarded by locks, so a point that arrives during the serialization is either in it or in
the next scrape. HTTP: :mod:`buildbot_stats.storage.prometheus_http`; user docs:
docs/storage-prometheus.rst.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import gzip
import inspect
import math
import re

from twisted.internet import defer
from twisted.internet import error
from twisted.internet import threads
from twisted.python import log

from buildbot import config
from buildbot.data import resultspec

from buildbot_stats.captures.builds import REPORT_IN_DIVISORS
from buildbot_stats.point import to_epoch_seconds
from buildbot_stats.storage.base import StatsStorageBase
from buildbot_stats.storage.base import describeBuildOf

try:
    from prometheus_client import CollectorRegistry
    from prometheus_client import Counter
    from prometheus_client import Gauge
    from prometheus_client import Histogram
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.exposition import choose_encoder
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
#: The label value of a tag the cardinality guard turned into a field.
OTHER = '_other_'
#: A point whose time is this many seconds older than the backend's start is history
#: (a replay, a catch-up): counters and histograms count what happened since the start.
HISTORY_MARGIN = 5.0

BUILD_MEASUREMENTS = ('builds', 'build_requests', 'steps', 'tests')


def metricName(*parts):
    """A Prometheus metric name of ``parts``: snake_case, ``[a-z0-9_]``, never empty."""
    words = []
    for part in parts:
        part = re.sub(r'([a-z0-9])([A-Z])', r'\1_\2', str(part))
        part = re.sub(r'[^A-Za-z0-9]+', '_', part).strip('_').lower()
        if part:
            words.append(part)
    name = '_'.join(words) or 'unnamed'
    if name[0].isdigit():
        name = '_' + name
    return name


def checkBuckets(owner, name, buckets):
    """``config.error`` unless ``buckets`` is a non-empty increasing list of positive
    numbers (a last ``float('inf')`` allowed); returns them as a tuple or None."""
    what = (f"{owner}: {name} must be a non-empty list of increasing positive numbers of "
            f"seconds")
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, (list, tuple)) \
            or not buckets:
        config.error(f"{what}, got {buckets!r}")
        return None
    previous = 0
    for bound in buckets:
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) \
                or math.isnan(bound) or bound <= previous:
            config.error(f"{what}, got {buckets!r} (bad bound {bound!r})")
            return None
        previous = bound
    return tuple(buckets)


def checkLabels(owner, labels):
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        config.error(f"{owner}: labels must be a list of tag names, got {labels!r}")
        return
    for label in labels:
        if label not in KNOWN_LABELS:
            config.error(f"{owner}: labels: unknown label {label!r}; known: "
                         f"{', '.join(KNOWN_LABELS)} (builder, result and step are always "
                         "there)")
    if len(set(labels)) != len(labels):
        config.error(f"{owner}: labels: {labels!r} names a label twice")


def numeric(value):
    """``value`` as a float, or None when it is no number (bools are 0 and 1; numeric
    strings count: a property set by a shell step is a string)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        value = float(value)
    elif isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return None if math.isnan(value) else value


def timeValue(value):
    """Epoch seconds of a datetime, an ISO 8601 string (the seed's start and end time
    callbacks) or a number; None for anything else."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if isinstance(value, datetime.datetime):
        return to_epoch_seconds(value)
    return numeric(value)


class BuildMetrics:
    """The counters and histograms of the build statistics measurements."""

    def __init__(self, registry, buckets, step_buckets, labels):
        self.labels = tuple(labels)
        extra = self.labels
        self.builds = Counter('buildbot_builds', 'Builds finished since the master started',
                              ('builder', 'result') + extra, registry=registry)
        self.build_duration = Histogram(
            'buildbot_build_duration_seconds', 'Duration of finished builds',
            ('builder', 'result') + extra, buckets=buckets, registry=registry)
        self.queue = Histogram(
            'buildbot_build_queue_seconds',
            'Time from a build request\'s submission to its build\'s start',
            ('builder',) + extra, buckets=buckets, registry=registry)
        self.turnaround = Histogram(
            'buildbot_build_turnaround_seconds',
            'Time from a buildset\'s submission to the end of its build',
            ('builder',) + extra, buckets=buckets, registry=registry)
        self.step_duration = Histogram(
            'buildbot_step_duration_seconds', 'Duration of finished steps',
            ('builder', 'step') + extra, buckets=step_buckets, registry=registry)
        self.tests = Counter('buildbot_tests', 'Tests run by finished builds, by outcome',
                             ('builder', 'outcome') + extra, registry=registry)

    def record(self, series, tags, fields):
        """Apply one point of a build statistics measurement; False if it held nothing
        these metrics use."""
        def label(key):
            value = tags.get(key)
            if value is None and key in fields:
                # the cardinality guard wrote this tag as a field
                return OTHER
            return '' if value is None else str(value)

        extra = [label(k) for k in self.labels]
        builder = label('builder_name')
        if series == 'builds':
            self.builds.labels(builder, label('result'), *extra).inc()
            duration = numeric(fields.get('duration'))
            if duration is not None:
                self.build_duration.labels(builder, label('result'), *extra).observe(duration)
            return True
        if series == 'build_requests':
            used = False
            for field, metric in (('queue_time', self.queue),
                                  ('turnaround_time', self.turnaround)):
                value = numeric(fields.get(field))
                if value is not None:
                    metric.labels(builder, *extra).observe(value)
                    used = True
            return used
        if series == 'steps':
            duration = numeric(fields.get('duration'))
            if duration is None:
                # a step that never started has no duration: nothing to observe
                return True
            self.step_duration.labels(builder, label('step_name'), *extra).observe(duration)
            return True
        if series == 'tests':
            used = False
            for outcome in ('passed', 'failed', 'skipped'):
                value = numeric(fields.get(outcome))
                if value is not None and value >= 0:
                    self.tests.labels(builder, outcome, *extra).inc(value)
                    used = True
            return used
        return False


class LastValueGauges:
    """The seed captures' series as gauges of the last value, labelled by builder.

    ``<builder>-build-times``: ``buildbot_last_build_start_timestamp_seconds``,
    ``buildbot_last_build_end_timestamp_seconds``, ``buildbot_last_build_duration_seconds``;
    ``<builder>-<property>`` (fields ``name``, ``value``): ``buildbot_build_property``
    labelled by ``property``; ``<builder>-<data name>``: ``buildbot_data_<data name>_<field>``.
    """

    BUILD_TIMES = {
        'start-time': 'buildbot_last_build_start_timestamp_seconds',
        'end-time': 'buildbot_last_build_end_timestamp_seconds',
        'duration': 'buildbot_last_build_duration_seconds',
    }
    HELP = {
        'buildbot_last_build_start_timestamp_seconds': 'Start time of the last build',
        'buildbot_last_build_end_timestamp_seconds': 'End time of the last build',
        'buildbot_last_build_duration_seconds': 'Duration of the last build',
        'buildbot_build_property': 'Last value of a numeric build property',
    }

    def __init__(self, registry, durationDivisor, keepLabel):
        self.registry = registry
        self.gauges = {}  # name -> Gauge
        # builder name -> multiplier to seconds of its CaptureBuildDuration values
        self.durationDivisor = durationDivisor
        # (metric, label, value) -> the label value to use (the cardinality guard)
        self.keepLabel = keepLabel

    def _gauge(self, name, labelnames, doc):
        gauge = self.gauges.get(name)
        if gauge is None:
            # a name clash with another metric raises ValueError: the point is rejected
            gauge = Gauge(name, doc, labelnames, registry=self.registry)
            self.gauges[name] = gauge
        elif gauge._labelnames != tuple(labelnames):
            raise ValueError(f"metric {name!r} exists with labels {gauge._labelnames}")
        return gauge

    def record(self, series, tags, fields):
        """Set the gauges of one point; ``(values set, problems)``."""
        builder = tags.get('builder_name')
        if not builder or not series.startswith(f"{builder}-"):
            return 0, [f"series {series!r} is not one of builder {builder!r}"]
        suffix = series[len(builder) + 1:]
        builder_label = self.keepLabel('builder', builder)
        if set(fields) == {'name', 'value'} and fields['name'] == suffix:
            value = numeric(fields['value'])
            if value is None:
                return 0, [f"property {suffix!r} = {fields['value']!r} is not a number"]
            name = 'buildbot_build_property'
            gauge = self._gauge(name, ('builder', 'property'), self.HELP[name])
            gauge.labels(builder_label, self.keepLabel('property', suffix)).set(value)
            return 1, []
        values, problems = [], []
        for field, raw in fields.items():
            if suffix == 'build-times':
                name = self.BUILD_TIMES.get(field)
                if name is None:
                    problems.append(f"unknown build-times field {field!r}")
                    continue
                if field == 'duration':
                    value = numeric(raw)
                    if value is not None:
                        value *= self.durationDivisor(builder)
                else:
                    value = timeValue(raw)
                doc = self.HELP[name]
            else:
                value = numeric(raw)
                name = metricName('buildbot_data', suffix, field)
                doc = f"Last {field!r} of the data {suffix!r} a build step posted"
            if value is None:
                problems.append(f"field {field!r} = {raw!r} is not a number")
                continue
            values.append((name, doc, value))
        for name, doc, value in values:
            self._gauge(name, ('builder',), doc).labels(builder_label).set(value)
        return len(values), problems


class SnapshotCollector:
    """Yields the metric families of the last snapshot; the reactor swaps it whole."""

    def __init__(self):
        self.families = []

    def collect(self):
        return list(self.families)


def buildersOfMaster(builders, masterid):
    """``(names of this master's builders, {builderid: name})`` from the data API's
    ``builders`` (a builder another master runs is left out)."""
    names = {}
    for b in builders:
        if masterid is None or not b.get('masterids') or masterid in b['masterids']:
            names[b['builderid']] = b['name']
    return sorted(names.values()), names


def presentFamilies(builder_names, name_of, running, pending, workers, masterid, now):
    """The gauges of the present: ``builder_names`` are this master's builders (a series
    each, 0 when idle), ``name_of`` maps the builder ids of ``running`` and ``pending`` (data
    API dicts of builds and build requests) to names; ``workers`` are the data API's."""
    ours = set(builder_names)
    running_by = dict.fromkeys(ours, 0)
    busy = set()
    for build in running:
        if masterid is not None and build.get('masterid') not in (None, masterid):
            continue
        name = name_of.get(build['builderid'])
        if name in ours:
            running_by[name] += 1
        if build.get('workerid') is not None:
            busy.add(build['workerid'])
    pending_by = dict.fromkeys(ours, 0)
    oldest = dict.fromkeys(ours, 0.0)
    for req in pending:
        name = name_of.get(req['builderid'])
        if name not in ours:
            continue
        pending_by[name] += 1
        submitted = to_epoch_seconds(req.get('submitted_at'))
        if submitted is not None:
            oldest[name] = max(oldest[name], now - submitted, 0.0)
    connected = 0
    for w in workers:
        masters = [c.get('masterid') for c in w.get('connected_to') or []]
        if masters and (masterid is None or masterid in masters):
            connected += 1

    def perBuilder(name, doc, values):
        family = GaugeMetricFamily(name, doc, labels=['builder'])
        for builder in sorted(values):
            family.add_metric([builder], values[builder])
        return family

    return [
        perBuilder('buildbot_builds_running', 'Builds running now on this master',
                   running_by),
        perBuilder('buildbot_build_requests_pending',
                   'Build requests waiting for a worker (every master sees the same queue)',
                   pending_by),
        perBuilder('buildbot_build_requests_oldest_age_seconds',
                   'Age of the oldest build request waiting; 0 when none waits', oldest),
        GaugeMetricFamily('buildbot_workers_connected', 'Workers connected to this master',
                          value=connected),
        GaugeMetricFamily('buildbot_workers_busy', 'Workers running a build of this master',
                          value=len(busy)),
    ]


#: Delivery counters of a backend: (key of metrics(), metric name, help)
DELIVERY_COUNTERS = (
    ('added', 'buildbot_stats_points_added', 'Points handed to the backend'),
    ('written', 'buildbot_stats_points_written', 'Points the backend stored'),
    ('rejected', 'buildbot_stats_points_rejected',
     'Points refused for their content, never retried'),
    ('dropped', 'buildbot_stats_points_dropped', 'Points discarded for lack of room or time'),
    ('retries', 'buildbot_stats_write_retries', 'Write attempts repeated after a failure'),
)
SERVICE_COUNTERS = (
    ('capture_errors', 'buildbot_stats_capture_errors',
     'Messages a capture could not make a point of'),
    ('foreign_messages', 'buildbot_stats_foreign_messages',
     'Messages of builds of other masters, ignored'),
    ('cache_misses', 'buildbot_stats_cache_misses',
     'Look-ups the caches could not answer (data API reads)'),
)


def healthFamilies(metrics):
    """The service's counters (StatsService.metrics()) as metric families."""
    families = []
    backends = metrics.get('backends') or {}
    for key, name, doc in DELIVERY_COUNTERS:
        family = CounterMetricFamily(name, doc, labels=['backend'])
        for backend in sorted(backends):
            if key in backends[backend]:
                family.add_metric([backend], backends[backend][key])
        families.append(family)
    pending = GaugeMetricFamily('buildbot_stats_points_pending',
                                'Points accepted and not yet written, rejected or dropped',
                                labels=['backend'])
    standard = {k for k, _, _ in DELIVERY_COUNTERS} | {'pending'}
    others = {}
    for backend in sorted(backends):
        counters = backends[backend]
        if 'pending' in counters:
            pending.add_metric([backend], counters['pending'])
        for key, value in counters.items():
            if key not in standard and numeric(value) is not None:
                others.setdefault(key, []).append((backend, value))
    families.append(pending)
    for key in sorted(others):
        family = GaugeMetricFamily(metricName('buildbot_stats_backend', key),
                                   f"The backend counter {key!r}", labels=['backend'])
        for backend, value in others[key]:
            family.add_metric([backend], numeric(value))
        families.append(family)
    for key, name, doc in SERVICE_COUNTERS:
        if key in metrics:
            families.append(CounterMetricFamily(name, doc, value=metrics[key]))
    if 'demoted_tags' in metrics:
        families.append(GaugeMetricFamily(
            'buildbot_stats_demoted_tags',
            'Tags (and labels) past max_tag_values, now written as fields',
            value=metrics['demoted_tags']))
    return families


@contextlib.contextmanager
def cyclicGCPaused():
    """Python's cyclic garbage collector off for the block (when it was on).

    A scrape of a large registry allocates a sample object and a label dict per sample and
    keeps a family's samples alive until the family is written: hundreds of thousands of
    objects that survive young collections and so trigger full ones, each a pause of every
    thread (the reactor's too) as long as the master's whole heap takes to scan (100+ ms
    with 500 builders x 20 steps in the benchmark). They are freed by reference counting,
    not by the collector; the collection that was due runs after the scrape, once.
    """
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def exposition(registry, accept, accept_encoding):
    """The body and headers of a scrape: prometheus_client's text format, or OpenMetrics
    when the Accept header asks for it; gzip when the client accepts it. Runs in a thread
    (one scrape at a time)."""
    encoder, content_type = choose_encoder(accept or '')
    with cyclicGCPaused():
        body = encoder(registry)
    headers = {'Content-Type': content_type}
    if 'gzip' in (accept_encoding or ''):
        body = gzip.compress(body, compresslevel=5)
        headers['Content-Encoding'] = 'gzip'
    return body, headers


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
    :param name: the backend name (default ``'PrometheusStorageService'``)
    """

    def checkConfig(self, port=DEFAULT_PORT, interface=DEFAULT_INTERFACE, captures=None,
                    buckets=DEFAULT_BUCKETS, step_buckets=None, labels=()):
        owner = self.name or type(self).__name__
        if CollectorRegistry is None:
            config.error(f"{owner}: the prometheus_client package is not installed "
                         "(pip install 'buildbot_stats[prometheus]')")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                                 or not 0 <= port <= 65535):
            config.error(f"{owner}: port must be a TCP port number (0-65535) or None, "
                         f"got {port!r}")
        if not isinstance(interface, str):
            config.error(f"{owner}: interface must be an address string ('' for every "
                         f"interface), got {interface!r}")
        self.checkCaptures(captures, owner)
        checkBuckets(owner, 'buckets', buckets)
        if step_buckets is not None:
            checkBuckets(owner, 'step_buckets', step_buckets)
        checkLabels(owner, labels)
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

        return [c for c in captures or () if isinstance(c, CaptureBuildDuration)]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._capturesGiven(args, kwargs) is None:
            self.captures = self.defaultCaptures()
        self.port = self.interface = self.buckets = self.step_buckets = None
        self.labels = ()
        self.registry = None
        self.buildMetrics = None
        self.gauges = None
        self._present = SnapshotCollector()
        self._health = SnapshotCollector()
        self._listening = None
        self._startedAt = None
        self._scrapeLock = defer.DeferredLock()
        self._logged = set()
        self.history_ignored = 0
        self.scrapes = 0
        self.snapshot_errors = 0

    def _capturesGiven(self, args, kwargs):
        try:
            bound = inspect.signature(self.checkConfig).bind(
                *args, **{k: v for k, v in kwargs.items() if k != 'name'})
        except TypeError:
            return None
        return bound.arguments.get('captures')

    @staticmethod
    def defaultCaptures():
        """The build statistics captures, for every builder."""
        from buildbot_stats import captures

        return [captures.CaptureBuildResults(), captures.CaptureQueueTimes(),
                captures.CaptureStepTimes(), captures.CaptureTestResults()]

    @defer.inlineCallbacks
    def reconfigService(self, port=DEFAULT_PORT, interface=DEFAULT_INTERFACE, captures=None,
                        buckets=DEFAULT_BUCKETS, step_buckets=None, labels=()):
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
        registry.register(self._health)
        self.registry = registry

    # -- its own HTTP server --------------------------------------------------------------

    def _listen(self):
        if self.port is None or self.master is None:
            return
        from buildbot_stats.storage.prometheus_http import metricsSite

        try:
            self._listening = self.master.reactor.listenTCP(
                self.port, metricsSite(lambda: self), interface=self.interface)
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
                used = self.buildMetrics.record(series_name, tags, post_data)
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

    @defer.inlineCallbacks
    def scrape(self, accept=None, accept_encoding=None):
        """``(body, headers)`` of one scrape: the snapshot on the reactor, the exposition
        in a thread (one scrape at a time)."""
        yield self._scrapeLock.acquire()
        try:
            if self.registry is None:
                self._newRegistry(DEFAULT_BUCKETS, DEFAULT_BUCKETS, ())
            yield self.snapshot()
            self.scrapes += 1
            reactor = self.master.reactor if self.master is not None else None
            if reactor is None:
                from twisted.internet import reactor
            result = yield threads.deferToThreadPool(
                reactor, reactor.getThreadPool(), exposition, self.registry, accept,
                accept_encoding)
        finally:
            self._scrapeLock.release()
        return result
