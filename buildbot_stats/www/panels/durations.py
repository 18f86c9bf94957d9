"""Build duration over time: one chart per builder, each build (when they can be told apart)
and the median and the 90th percentile per period, and where its duration changed."""

from __future__ import annotations

from buildbot_stats.reading.changes import DURATION
from buildbot_stats.reading.summary import fmtSeconds
from buildbot_stats.www.panels import changes
from buildbot_stats.www.panels.base import Panel


class DurationsPanel(Panel):
    id = 'durations'
    title = "Build duration over time"
    captured_by = ('CaptureBuildDuration',)
    add_line = "stats.CaptureBuildDurationAllBuilders()"
    what = "Build durations"

    def compute(self, q):
        """``[{'builder', 'count', 'builds': [(time, number, duration)] or None, 'periods':
        [(period start, Stats)], 'changes': [change record]}]``."""
        counts = q.summary('durations')
        periods = q.summary('durations', per_period=True)
        out = []
        for b in sorted(periods, key=lambda b: (b is None, b or '')):
            n = counts[b].count if b in counts else 0
            builds = (q.ask('buildDurations', b, q.start, q.end).get(b)
                      if q.drawBuilds(n) else None)
            out.append({'builder': b, 'count': n, 'builds': builds, 'periods': periods[b],
                        'changes': changes.changesOf(
                            q, lambda r, b=b: (r['builder'], r['series']) == (b, DURATION))})
        return out

    def render(self, page, model):
        out = []
        for chart in model:
            b = chart['builder']
            lines = []
            if chart['builds'] is not None:
                lines.append((f"{b} builds", page.points(
                    [(b, t, n, d) for t, n, d in chart['builds']], "duration", fmtSeconds)))
            lines += page.periodLines(chart['periods'], b, "builds", fmtSeconds)
            out.append(page.figure('duration', b, f"{b}: build duration",
                                   page.chart(lines, "seconds", f"{b}: build duration",
                                              changes.events(page, chart['changes']))))
        return "".join(out)
