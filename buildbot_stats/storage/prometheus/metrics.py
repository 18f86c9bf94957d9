"""What the points of the captures become in a Prometheus registry: the counters and
histograms of the build statistics, the last-value gauges of the seed captures, and the
naming and value rules they share (docs/storage-prometheus.rst lists every metric)."""

from __future__ import annotations

import bisect
import datetime
import itertools
import math
import re

from prometheus_client import Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from buildbot_stats.outcomes import OUTCOMES
from buildbot_stats.outcomes import countOutcomes
from buildbot_stats.point import to_epoch_seconds

#: The label value of a tag the cardinality guard turned into a field.
OTHER = '_other_'


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


class CounterFamily:
    """A labelled counter kept as a dict, changed on the reactor only (no locks); its
    metric family is built from any subset of its children, so that a scrape can write a
    large family a slice at a time between other reactor work.

    :param name: the name without ``_total`` (prometheus_client adds it)
    """

    def __init__(self, name, doc, labelnames):
        self.name, self.doc, self.labelnames = name, doc, tuple(labelnames)
        self.children = {}  # label values -> value

    def inc(self, labelvalues, amount=1.0):
        self.children[labelvalues] = self.children.get(labelvalues, 0.0) + amount

    def family(self, items):
        family = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for labelvalues, value in items:
            family.add_metric(labelvalues, value)
        return family

    def collect(self):
        return [self.family(list(self.children.items()))]


class GaugeFamily(CounterFamily):
    """A labelled gauge kept as a dict (see :class:`CounterFamily`); :meth:`setMax` keeps
    the largest value set."""

    def setMax(self, labelvalues, value):
        if value > self.children.get(labelvalues, -math.inf):
            self.children[labelvalues] = value

    def family(self, items):
        family = GaugeMetricFamily(self.name, self.doc, labels=self.labelnames)
        for labelvalues, value in items:
            family.add_metric(labelvalues, value)
        return family


class HistogramFamily:
    """A labelled histogram kept as lists of bucket counts (see :class:`CounterFamily`).

    :param buckets: upper bounds, increasing; ``+Inf`` is added
    """

    def __init__(self, name, doc, labelnames, buckets):
        self.name, self.doc, self.labelnames = name, doc, tuple(labelnames)
        self.bounds = [float(b) for b in buckets if b != math.inf] + [math.inf]
        self.les = [floatToGoString(b) for b in self.bounds]
        # label values -> [count per bucket (not cumulative)..., sum]
        self.children = {}

    def observe(self, labelvalues, value):
        child = self.children.get(labelvalues)
        if child is None:
            child = self.children[labelvalues] = [0] * len(self.bounds) + [0.0]
        # the first bucket whose bound is >= value (le: "less than or equal")
        child[bisect.bisect_left(self.bounds, value)] += 1
        child[-1] += value

    def family(self, items):
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        les = self.les
        for labelvalues, child in items:
            cumulative = list(itertools.accumulate(child[:-1]))
            family.add_metric(labelvalues, list(zip(les, cumulative)), child[-1])
        return family

    def collect(self):
        return [self.family(list(self.children.items()))]


class BuildMetrics:
    """The counters and histograms of the build statistics measurements, registered in
    ``registry`` (and listed in :attr:`families`, in exposition order)."""

    def __init__(self, registry, buckets, step_buckets, labels):
        self.labels = tuple(labels)
        extra = self.labels
        self.builds = CounterFamily('buildbot_builds', 'Builds finished since the master started',
                                    ('builder', 'result') + extra)
        self.build_duration = HistogramFamily(
            'buildbot_build_duration_seconds', 'Duration of finished builds',
            ('builder', 'result') + extra, buckets)
        self.queue = HistogramFamily(
            'buildbot_build_queue_seconds',
            'Time from a build request\'s submission to its build\'s start',
            ('builder',) + extra, buckets)
        self.turnaround = HistogramFamily(
            'buildbot_build_turnaround_seconds',
            'Time from a buildset\'s submission to the end of its build',
            ('builder',) + extra, buckets)
        self.step_duration = HistogramFamily(
            'buildbot_step_duration_seconds', 'Duration of finished steps',
            ('builder', 'step') + extra, step_buckets)
        self.tests = CounterFamily('buildbot_tests', 'Tests run by finished builds, by outcome',
                                   ('builder', 'outcome') + extra)
        # one per test per build (CaptureTestHistory): flaky is a pass after a failure
        self.test_cases = CounterFamily(
            'buildbot_test_cases', 'Test results of finished builds, one per test, by outcome '
            '(flaky: passed after a failed attempt)', ('builder', 'outcome') + extra)
        # not labelled by the extra labels: one time per builder (the alert "no build for
        # a day" in dashboards/prometheus/alerts.yml)
        self.last_finished = GaugeFamily(
            'buildbot_build_last_finished_timestamp_seconds',
            'End time of the last build finished since the master started', ('builder',))
        self.families = [self.builds, self.build_duration, self.queue, self.turnaround,
                         self.step_duration, self.tests, self.test_cases, self.last_finished]
        for family in self.families:
            registry.register(family)

    def recordTests(self, run, cases, keepLabel=None):
        """Count one build's test results (:class:`~buildbot_stats.outcomes.TestRun` and
        its cases) by outcome; never a test name as a label."""
        known = {'branch': run.branch}
        extra = [str(known.get(k) or '') for k in self.labels]
        builder = run.builder if keepLabel is None else keepLabel('builder_name', run.builder)
        for outcome, count in zip(OUTCOMES, countOutcomes(cases)):
            if count:
                self.test_cases.inc((builder, outcome, *extra), count)

    def record(self, series, tags, fields, time=None):
        """Apply one point of a build statistics measurement (``time``: the point's, epoch
        seconds); False if it held nothing these metrics use."""
        def label(key):
            value = tags.get(key)
            if value is None and key in fields:
                # the cardinality guard wrote this tag as a field
                return OTHER
            return '' if value is None else str(value)

        extra = [label(k) for k in self.labels]
        builder = label('builder_name')
        if series == 'builds':
            self.builds.inc((builder, label('result'), *extra))
            if time is not None:
                self.last_finished.setMax((builder,), float(time))
            duration = numeric(fields.get('duration'))
            if duration is not None:
                self.build_duration.observe((builder, label('result'), *extra), duration)
            return True
        if series == 'build_requests':
            used = False
            for field, metric in (('queue_time', self.queue),
                                  ('turnaround_time', self.turnaround)):
                value = numeric(fields.get(field))
                if value is not None:
                    metric.observe((builder, *extra), value)
                    used = True
            return used
        if series == 'steps':
            duration = numeric(fields.get('duration'))
            if duration is None:
                # a step that never started has no duration: nothing to observe
                return True
            self.step_duration.observe((builder, label('step_name'), *extra), duration)
            return True
        if series == 'tests':
            used = False
            for outcome in ('passed', 'failed', 'skipped'):
                value = numeric(fields.get(outcome))
                if value is not None and value >= 0:
                    self.tests.inc((builder, outcome, *extra), value)
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
        """Set the gauges of one point; ``(values set, problems)``. The build number (a
        field under ``StatsService(build_number='field')``) is no statistic: it is neither
        a gauge nor a label (one per build would grow the registry without end)."""
        if 'build_number' in fields:
            fields = {k: v for k, v in fields.items() if k != 'build_number'}
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
