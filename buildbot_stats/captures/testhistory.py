"""CaptureTestHistory: the outcome and duration of every test of every finished build, for
the per-test history (which tests flake, fail and slow down)."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet import threads

from buildbot_stats.captures.base import BUILD_FINISHED
from buildbot_stats.captures.base import BuilderMatchMixin
from buildbot_stats.captures.base import Capture
from buildbot_stats.captures.base import checkBuilderName
from buildbot_stats.outcomes import TEST_MEASUREMENTS
from buildbot_stats.outcomes import TestRun
from buildbot_stats.outcomes import mergeResults
from buildbot_stats.point import to_epoch_seconds
from buildbot_stats.slices import cyclicGCPaused



def merged(rows):
    """:func:`~buildbot_stats.outcomes.mergeResults` with the cyclic garbage collector
    paused (see :mod:`buildbot_stats.slices`): what it makes is freed by reference
    counting or kept, never a cycle."""
    with cyclicGCPaused():
        return mergeResults(rows)


def revisionOf(properties, buildset):
    """The revision a build tested: its ``got_revision`` property (the first codebase's,
    by name, when it is a dict of codebases), else the first sourcestamp's revision."""
    got = (properties or {}).get('got_revision')
    value = got[0] if isinstance(got, (tuple, list)) and got else None
    if isinstance(value, dict):
        value = next((value[k] for k in sorted(value) if value[k]), None)
    if value:
        return str(value)
    for ss in sorted((buildset or {}).get('sourcestamps') or [],
                     key=lambda ss: ss.get('codebase') or ''):
        if ss.get('revision'):
            return str(ss['revision'])
    return None


class CaptureTestHistory(BuilderMatchMixin, Capture):
    """For each finished build with test results in Buildbot's test result API (whoever
    submitted them: :class:`~buildbot_stats.steps.junit.JUnitResults`, a custom step),
    one outcome and duration per test, handed to the backends' ``postTestResults``: the
    embedded store keeps them in tables of their own, InfluxDB in the ``test_cases`` and
    ``test_runs`` measurements, Prometheus as counts (docs/captures.rst).

    How results read as outcomes: :mod:`buildbot_stats.outcomes`.

    :param builder_name: the builder to capture, ``None`` (the default) for every builder
    """

    uses = ('builder_names', 'workers', 'build_requests', 'buildsets')

    def __init__(self, builder_name=None):
        if builder_name is not None:
            checkBuilderName(type(self).__name__, builder_name)
        self._builder_name = builder_name
        super().__init__(BUILD_FINISHED, None)

    def writesSeries(self, series, builder_name=None):
        # the InfluxDB backend names the capture behind a refused series
        return series in TEST_MEASUREMENTS and self.writesBuilder(builder_name)

    @defer.inlineCallbacks
    def consumer(self, routingKey, msg):
        builder_name = yield self.getBuilderName(msg['builderid'])
        if not self.builderMatches(builder_name):
            return
        rows = yield self.lookups.getTestResults(msg['buildid'])
        if not rows:
            return
        reactor = self.master.reactor
        # 10,000 results take ~10 ms to merge: off the reactor
        cases = yield threads.deferToThreadPool(reactor, reactor.getThreadPool(),
                                                merged, rows)
        if not cases:
            return
        run = yield self.testRun(msg, builder_name)
        for backend in self.parent_svcs:
            backend.postTestResults(run, cases)

    @defer.inlineCallbacks
    def testRun(self, build, builder_name):
        """The :class:`~buildbot_stats.outcomes.TestRun` of a finished build."""
        buildset = None
        request = None
        if build.get('buildrequestid') is not None:
            request = yield self.lookups.getBuildRequest(build['buildrequestid'])
        if request:
            buildset = yield self.lookups.getBuildset(request['buildsetid'])
        properties = yield self.getBuildProperties(build['buildid'])
        tags = yield self.lookups.getBuildTags(build)
        end = to_epoch_seconds(build.get('complete_at'))
        if end is None:
            end = to_epoch_seconds(build.get('started_at')) or self.master.reactor.seconds()
        return TestRun(builder=builder_name, build_number=build['number'],
                       buildid=build['buildid'], time=end,
                       revision=revisionOf(properties, buildset),
                       buildset=request['buildsetid'] if request else None,
                       branch=(tags or {}).get('branch'))
