"""CaptureTestResults: passed, failed and skipped tests of a build, in ``tests``."""

from __future__ import annotations

from twisted.internet import defer

from buildbot_stats.captures.buildstats import BuildStatsCapture
from buildbot_stats.captures.buildstats import resultName
# A test result set of category SKIP_CATEGORY counts each of its results as one skipped
# test (Buildbot's own categories have no skipped count: buildbot_stats' convention);
# NOT_TESTS: categories whose counts are not tests (lint findings), left out of the sums
from buildbot_stats.outcomes import NOT_TESTS
from buildbot_stats.outcomes import SKIP_CATEGORY

__all__ = ['CaptureTestResults', 'NOT_TESTS', 'SKIP_CATEGORY']


class CaptureTestResults(BuildStatsCapture):
    """One point per finished build that has test result sets, in ``tests``.

    Fields (ints): ``passed`` and ``failed`` (sums of ``tests_passed`` / ``tests_failed``
    of the build's complete result sets, ``code_issue`` sets left out), ``skipped`` (the
    results of sets of category ``'skip_only'``), ``total`` (their sum), ``result_sets``
    (sets counted) and ``build_number``. Tags: ``builder_name``, ``result`` (of the build),
    ``worker``, ``branch``, ``repository``, ``project``. Time: the build's end.

    ``callback(fields, info)``: ``info`` is ``{'build', 'test_result_sets', 'builder_name',
    'tags'}``.
    """

    measurement = 'tests'

    @defer.inlineCallbacks
    def capture(self, build, builder_name, tags):
        sets = yield self.lookups.getTestResultSets(build['buildid'])
        passed = failed = skipped = counted = 0
        for rs in sets or []:
            if not rs.get('complete') or rs.get('category') in NOT_TESTS:
                continue
            if rs.get('category') == SKIP_CATEGORY:
                results = yield self.master.data.get(
                    ('test_result_sets', rs['test_result_setid'], 'results'))
                skipped += len(results or [])
                counted += 1
                continue
            if rs.get('tests_passed') is None and rs.get('tests_failed') is None:
                # performance, sizes...: values, not test outcomes
                continue
            passed += rs.get('tests_passed') or 0
            failed += rs.get('tests_failed') or 0
            counted += 1
        if not counted:
            return
        tags['result'] = resultName(build.get('results'))
        fields = {
            'passed': passed,
            'failed': failed,
            'skipped': skipped,
            'total': passed + failed + skipped,
            'result_sets': counted,
            'build_number': build['number'],
        }
        info = {'build': build, 'test_result_sets': list(sets), 'builder_name': builder_name,
                'tags': dict(tags)}
        self.post(build, builder_name, tags, fields, info,
                  self.buildTime(build, build['complete_at']))
