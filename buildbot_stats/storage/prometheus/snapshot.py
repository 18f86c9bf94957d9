"""A scrape: the gauges of the present and the service's health as immutable metric
families swapped in on the reactor, and the exposition, a slice at a time
(:func:`slicedExposition`) or of a whole registry at once (:func:`exposition`)."""

from __future__ import annotations

import gzip

from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from buildbot_stats.point import to_epoch_seconds
from buildbot_stats.storage.prometheus.metrics import metricName
from buildbot_stats.storage.prometheus.metrics import numeric


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


def changeFamilies(open_slowdowns, keepLabel):
    """The gauge of the changes for the worse still open (``{(builder, series): count}``,
    :meth:`buildbot_stats.regressions.Regressions.openSlowdowns`), its label values
    guarded as every other label (``keepLabel(label, value)``): a series past the guard
    adds to the ``_other_`` one."""
    values = {}
    for (builder, series), count in open_slowdowns.items():
        key = (keepLabel('builder', builder), keepLabel('series', series))
        values[key] = values.get(key, 0) + count
    family = GaugeMetricFamily(
        'buildbot_stats_open_slowdowns',
        'Changes for the worse (slowdowns) found and not followed by a change back',
        labels=['builder', 'series'])
    for key in sorted(values):
        family.add_metric(list(key), values[key])
    return [family]


#: Delivery counters of a backend: (key of metrics(), metric name, help)
DELIVERY_COUNTERS = (
    ('added', 'buildbot_stats_points_added', 'Points handed to the backend'),
    ('written', 'buildbot_stats_points_written', 'Points the backend stored'),
    ('rejected', 'buildbot_stats_points_rejected',
     'Points refused for their content, never retried'),
    ('dropped', 'buildbot_stats_points_dropped', 'Points discarded for lack of room or time'),
    ('retries', 'buildbot_stats_write_retries', 'Write attempts repeated after a failure'),
    ('limit_rejected', 'buildbot_stats_points_rejected_by_limit',
     "Of the rejected points, those the server refused because its series limit was reached "
     "(InfluxDB's max-series-per-database, max-values-per-tag, a plan's series quota)"),
)
#: What a backend's series checks know (InfluxDB, docs/scaling.rst): (key of metrics(),
#: metric name, help); a backend reports each once known.
SERIES_GAUGES = (
    ('series', 'buildbot_stats_series',
     "Series of the backend's database (SHOW SERIES CARDINALITY), checked hourly"),
    ('series_limit', 'buildbot_stats_series_limit',
     "The database's series limit (max-series-per-database; 0: none), from the server, a "
     "refusal or max_series"),
    ('build_number_values', 'buildbot_stats_build_number_tag_values',
     "The most values of the build_number tag in one measurement"),
    ('values_per_tag_limit', 'buildbot_stats_values_per_tag_limit',
     "The server's max-values-per-tag (0: none)"),
    ('series_limit_warning', 'buildbot_stats_series_limit_warning',
     "1 while the series (or build_number values) have passed 80 % of their limit"),
)
SERVICE_COUNTERS = (
    ('capture_errors', 'buildbot_stats_capture_errors',
     'Messages a capture could not make a point of'),
    ('foreign_messages', 'buildbot_stats_foreign_messages',
     'Messages of builds of other masters, ignored'),
    ('cache_misses', 'buildbot_stats_cache_misses',
     'Look-ups the caches could not answer (data API reads)'),
)


#: the per-builder test counts of the answers' side (reading.gauges): key, name, help
TEST_GAUGES = (
    ('flaky', 'buildbot_tests_flaky',
     'Tests the flaky-test analysis finds in the builds of the last 7 days'),
    ('failing', 'buildbot_tests_failing', 'Tests failing in the latest build'),
    ('slowing', 'buildbot_tests_slowing',
     'Tests whose median duration rose over the latest builds'),
)


def testFamilies(counts):
    """``{builder: {'flaky', 'failing', 'slowing'}}`` (reading.gauges) as gauges by
    builder; none without counts."""
    if not counts:
        return []
    families = []
    for key, name, doc in TEST_GAUGES:
        family = GaugeMetricFamily(name, doc, labels=['builder'])
        for builder in sorted(counts):
            family.add_metric([builder], counts[builder].get(key, 0))
        families.append(family)
    return families


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
    standard = ({k for k, _, _ in DELIVERY_COUNTERS} | {k for k, _, _ in SERIES_GAUGES}
                | {'pending'})
    others = {}
    for backend in sorted(backends):
        counters = backends[backend]
        if 'pending' in counters:
            pending.add_metric([backend], counters['pending'])
        for key, value in counters.items():
            if key not in standard and numeric(value) is not None:
                others.setdefault(key, []).append((backend, value))
    families.append(pending)
    for key, name, doc in SERIES_GAUGES:
        held = [(b, numeric(backends[b].get(key))) for b in sorted(backends)]
        held = [(b, v) for b, v in held if v is not None]
        if held:
            family = GaugeMetricFamily(name, doc, labels=['backend'])
            for backend, value in held:
                family.add_metric([backend], value)
            families.append(family)
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


def exposition(registry, accept, accept_encoding):
    """The body and headers of an exposition of a whole registry at once: prometheus_client's
    text format, or OpenMetrics when the Accept header asks for it; gzip when the client
    accepts it. For tests and small registries: a scrape writes a slice at a time
    (:func:`slicedExposition`)."""
    encoder, content_type = choose_encoder(accept or '')
    body = encoder(registry)
    headers = {'Content-Type': content_type}
    if 'gzip' in (accept_encoding or ''):
        body = gzip.compress(body, compresslevel=5)
        headers['Content-Encoding'] = 'gzip'
    return body, headers


#: About this many samples are written per reactor step (a few milliseconds of work).
SLICE_SAMPLES = 256


class _Collected:
    def __init__(self, metrics):
        self.metrics = metrics

    def collect(self):
        return self.metrics


def _withoutHeader(body):
    """``body`` without its leading comment lines (``# HELP``, ``# TYPE``, ``# UNIT``)."""
    while body.startswith(b'#'):
        body = body[body.index(b'\n') + 1:]
    return body


def slicedExposition(sources, accept):
    """``(headers, pieces)``: the exposition of ``sources`` as an iterator of bytes, each
    piece a few milliseconds of work, to be run on the reactor a piece at a time.

    A source with ``children`` and ``family(items)`` (:class:`CounterFamily`,
    :class:`HistogramFamily`) is written :data:`SLICE_SAMPLES` samples at a time: each
    slice is prometheus_client's exposition of a family holding some of the children, the
    comment lines of every slice but the first left out, so that the family's samples follow
    its one ``# HELP`` and ``# TYPE``. Any other source (a collector) is written a family a
    piece. The OpenMetrics ``# EOF`` ends the last piece only.
    """
    encoder, content_type = choose_encoder(accept or '')
    openmetrics = content_type.startswith('application/openmetrics-text')
    eof = b'# EOF\n'

    def pieces():
        for source in sources:
            if hasattr(source, 'children'):
                children = source.children
                # the keys only: one list, no new object per child to outlive the slices
                keys = list(children)
                per_child = len(source.bounds) + 2 if hasattr(source, 'bounds') else 1
                step = max(1, SLICE_SAMPLES // per_child)
                for start in range(0, max(len(keys), 1), step):
                    items = [(k, children[k]) for k in keys[start:start + step]]
                    body = encoder(_Collected([source.family(items)]))
                    if openmetrics and body.endswith(eof):
                        body = body[:-len(eof)]
                    yield _withoutHeader(body) if start else body
            else:
                # a family a piece (the present has three of one sample per builder)
                for family in source.collect():
                    body = encoder(_Collected([family]))
                    if openmetrics and body.endswith(eof):
                        body = body[:-len(eof)]
                    yield body
        if openmetrics:
            yield eof

    return {'Content-Type': content_type}, pieces()
