"""Tests: per builder, the last build's counts and the builds with failures, and a chart
of passed and failed per build."""

from __future__ import annotations

from buildbot_stats import charts
from buildbot_stats.reading.changes import TESTS
from buildbot_stats.www.html import e
from buildbot_stats.www.panels import changes
from buildbot_stats.www.panels.base import Panel


class TestsPanel(Panel):
    id = 'tests'
    title = "Tests"
    reads = {'tests': 'testCounts', 'changes': 'changePoints'}
    captured_by = ('CaptureTestResults',)
    add_line = "stats.CaptureTestResults()"

    def render(self, page, data):
        tests = data['tests']
        if not tests:
            return page.missing(self, "Test results")
        rows, passed, failed = [], [], []
        for b, runs in sorted(tests.items()):
            t, n, p, f, s = runs[-1]
            with_failures = sum(1 for r in runs if r[3])
            rows.append([e(b), str(len(runs)), str(p), str(f), str(s), str(with_failures)])
            passed.extend((b, t, n, p) for t, n, p, _, _ in runs)
            failed.extend((b, t, n, f) for t, n, _, f, _ in runs)
        passed, failed = page.points(passed, "passed"), page.points(failed, "failed")
        table = page.table(("builder", "builds", "passed (last)", "failed (last)",
                            "skipped (last)", "builds with failures"), rows, "tests")
        chart = page.figure('tests', 'tests', "Tests passed and failed per build",
                            charts.lineChart([("passed", passed), ("failed", failed)],
                                             y_label="tests", title="Tests",
                                             events=changes.events(
                                                 page, data, lambda r: r['series'] == TESTS)))
        return table + chart
