"""What each of the page's questions reads, the same for every reader: the series, the
fields, and the group an answer is given per.

======== ============================== =========================== ==========================
kind     series (measurement)           fields                      group (the answer's key)
======== ============================== =========================== ==========================
durations ``<builder>-build-times``     ``duration``                builder
results  ``builds``                     the points (a count)        (builder, result)
queue    ``build_requests``             ``queue_time``              builder
steps    ``steps``                      ``duration``                (builder, step name)
tests    ``tests``                      passed, failed, skipped     (builder, field)
custom   every other series (but the    every numeric field         (series, field)
         change points and the tests'
         ``test_cases``, ``test_runs``)
======== ============================== =========================== ==========================
"""

from __future__ import annotations

from dataclasses import dataclass

from buildbot_stats.outcomes import TEST_MEASUREMENTS
from buildbot_stats.storage.sqlite.rollups import BUILD_TIMES
from buildbot_stats.storage.sqlite.rollups import CHANGE_POINTS
from buildbot_stats.storage.sqlite.rollups import NOT_ROLLED
from buildbot_stats.storage.sqlite.rollups import POINTS

#: The measurements of the build statistics captures (results, queue times, steps, tests).
MEASUREMENTS = ('builds', 'build_requests', 'steps', 'tests')
#: The series that are not custom series: those, the change points kept, and the per-test
#: history's InfluxDB measurements (read by :mod:`buildbot_stats.reading.tests` only).
NOT_CUSTOM = MEASUREMENTS + (CHANGE_POINTS,) + TEST_MEASUREMENTS
#: Buildbot's own first step of every build (attaching the worker, starting a latent one):
#: left out of the page's steps, as the steps Buildbot's UI hides are.
WORKER_PREPARATION = 'worker_preparation'
#: Fields that identify rather than measure: never a custom series' value (nor rolled up).
IDENTIFIERS = NOT_ROLLED


@dataclass(frozen=True)
class Kind:
    name: str
    #: the measurement; None: per builder (durations) or every other series (custom)
    measurement: str | None
    #: the fields; () for every numeric field but the identifiers
    fields: tuple

    def group(self, series, tags, field, by_builder=True):
        """The key of the answer a value of ``field`` of a point of ``series`` with ``tags``
        belongs to; ``by_builder=False``: the same without the builder (durations and
        queue: None, results: the result, steps: the step, tests: the field)."""
        name = self.name
        if name == 'custom':
            return (series, field)
        if name == 'durations':
            return series[:-len(BUILD_TIMES)] if by_builder else None
        builder = tags.get('builder_name')
        if name == 'queue':
            return builder if by_builder else None
        other = {'results': 'result', 'steps': 'step_name'}.get(name)
        other = field if name == 'tests' else tags.get(other)
        return (builder, other) if by_builder else other

    def shows(self, tags):
        """False for a point the page leaves out: a step Buildbot's UI hides (``hideStepIf``:
        :class:`CaptureStepTimes` tags it ``hidden``) and Buildbot's own
        ``worker_preparation``; True for everything else."""
        if self.name != 'steps':
            return True
        return 'hidden' not in tags and tags.get('step_name') != WORKER_PREPARATION

    def numbers(self, fields):
        """``[(field, value)]`` of a point's fields that this kind reads."""
        if self.fields == (POINTS,):
            return [(POINTS, None)]
        if self.fields:
            return [(f, fields[f]) for f in self.fields if isNumber(fields.get(f))]
        return [(f, v) for f, v in fields.items() if isNumber(v) and f not in IDENTIFIERS]


KINDS = {
    'durations': Kind('durations', None, ('duration',)),
    'results': Kind('results', 'builds', (POINTS,)),
    'queue': Kind('queue', 'build_requests', ('queue_time',)),
    'steps': Kind('steps', 'steps', ('duration',)),
    'tests': Kind('tests', 'tests', ('passed', 'failed', 'skipped')),
    'custom': Kind('custom', None, ()),
}


def isNumber(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def isCustom(series):
    return not series.endswith(BUILD_TIMES) and series not in NOT_CUSTOM
