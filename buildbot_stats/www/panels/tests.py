"""Tests: per builder, the last build's counts and the builds with failures, and a chart of
passed and failed per build (or their mean per period)."""

from __future__ import annotations

from buildbot_stats.reading.changes import TESTS
from buildbot_stats.www.html import e
from buildbot_stats.www.panels import changes
from buildbot_stats.www.panels.base import Panel

HEADERS = ("builder", "builds", "passed (last)", "failed (last)", "skipped (last)",
           "builds with failures")


class TestsPanel(Panel):
    id = 'tests'
    title = "Tests"
    captured_by = ('CaptureTestResults',)
    add_line = "stats.CaptureTestResults()"
    what = "Test results"

    def compute(self, q):
        """``{'rows': [(builder, builds, passed, failed, skipped of the last build, builds
        with failures)], 'builds': {builder: [(time, number, passed, failed, skipped)]} or
        None, 'periods': {field: [(period start, Stats)]}, 'changes': [change record]}``."""
        stats = q.summary('tests')
        if not stats:
            return None
        last = q.window('lastTests')
        builders = sorted({b for b, _ in stats}, key=lambda b: (b is None, b or ''))
        rows = []
        total = 0
        for b in builders:
            builds = max(stats[(b, f)].count for f in ('passed', 'failed', 'skipped')
                         if (b, f) in stats)
            total += builds
            failed = stats.get((b, 'failed'))
            p, f, s = last.get(b, (None, None, '', '', ''))[2:]
            rows.append((b or '', str(builds), str(p), str(f), str(s),
                         str(failed.nonzero if failed else 0)))
        builds = q.window('testCounts') if q.drawBuilds(total) else None
        periods = None if builds is not None else q.summary('tests', per_period=True,
                                                            by_builder=False)
        return {'rows': rows, 'builds': builds, 'periods': periods,
                'changes': changes.changesOf(q, lambda r: r['series'] == TESTS)}

    def render(self, page, model):
        table = page.table(HEADERS, [list(map(e, r)) for r in model['rows']], "tests")
        if model['builds'] is not None:
            passed, failed = [], []
            for b, runs in sorted(model['builds'].items(), key=lambda kv: kv[0] or ''):
                passed.extend((b, t, n, p) for t, n, p, _, _ in runs)
                failed.extend((b, t, n, f) for t, n, _, f, _ in runs)
            lines = [("passed", page.points(passed, "passed")),
                     ("failed", page.points(failed, "failed"))]
            caption = "Tests passed and failed per build"
        else:
            lines = [(f"{field} (mean per {page.periodWord()})",
                      page.periodMarks(model['periods'].get(field, []), field, 'mean', "builds"))
                     for field in ('passed', 'failed')]
            caption = f"Tests passed and failed, mean per {page.periodWord()}"
        chart = page.figure('tests', 'tests', caption, page.chart(
            lines, "tests", "Tests", changes.events(page, model['changes'])))
        return table + chart

    def text(self, model):
        return [HEADERS] + model['rows']
