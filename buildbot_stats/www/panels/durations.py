"""Build duration over time: one chart per builder, every build with the median and the
90th percentile per period, and where its duration changed."""

from __future__ import annotations

from buildbot_stats import charts
from buildbot_stats.reading.changes import DURATION
from buildbot_stats.reading.summary import fmtSeconds
from buildbot_stats.www.panels import changes
from buildbot_stats.www.panels.base import Panel


class DurationsPanel(Panel):
    id = 'durations'
    title = "Build duration over time"
    reads = {'durations': 'buildDurations', 'changes': 'changePoints'}
    captured_by = ('CaptureBuildDuration',)
    add_line = "stats.CaptureBuildDurationAllBuilders()"

    def render(self, page, data):
        durations = data['durations']
        if not durations:
            return page.missing(self, "Build durations")
        out = []
        for b, builds in sorted(durations.items()):
            pts = page.points([(b, t, n, d) for t, n, d in builds], "duration", fmtSeconds)
            lines = [(f"{b} builds", pts),
                     *page.periodLines([(t, d) for t, _, d in builds], b)]
            styles = {lines[0][0]: 'points', lines[1][0]: 'line', lines[2][0]: 'dashed'}
            marks = changes.events(page, data, lambda r, b=b: (r['builder'], r['series'])
                                   == (b, DURATION))
            out.append(page.figure('duration', b, f"{b}: build duration",
                                   charts.lineChart(lines, y_label="seconds",
                                                    title=f"{b}: build duration",
                                                    styles=styles, events=marks)))
        return "".join(out)
