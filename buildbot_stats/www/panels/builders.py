"""The builders table: builds, median, 90th percentile, last duration and trend."""

from __future__ import annotations

from buildbot_stats.reading.summary import TREND_WINDOW
from buildbot_stats.reading.summary import fmtSeconds
from buildbot_stats.reading.summary import fmtTrend
from buildbot_stats.reading.summary import trend
from buildbot_stats.www.html import e
from buildbot_stats.www.panels.base import Panel
from buildbot_stats.www.panels.durations import DurationsPanel

HEADERS = ("builder", "builds", "median", "p90", "last", "trend")


class BuildersPanel(Panel):
    id = 'builders'
    title = "Builders"
    # without durations the table is empty: it asks for what the durations panel asks for
    captured_by = DurationsPanel.captured_by
    add_line = DurationsPanel.add_line
    what = DurationsPanel.what

    def compute(self, q):
        """``[{'builder', 'builds', 'median', 'p90', 'exact', 'last', 'trend'}]``: the median
        and p90 of the range, the last build and the trend of the latest builds."""
        stats = q.summary('durations')
        recent = q.window('recentDurations', n=TREND_WINDOW)
        builders = set(stats) | {b for b, _ in q.summary('results')}
        rows = []
        for b in sorted(builders, key=lambda b: (b is None, b or '')):
            st = stats.get(b)
            latest = [d for _, _, d in recent.get(b, [])]
            rows.append({'builder': b, 'builds': st.count if st else 0,
                         'median': st.median if st else None, 'p90': st.p90 if st else None,
                         'exact': st.exact if st else True,
                         'last': latest[-1] if latest else None,
                         'trend': trend(latest) if st else (None, "")})
        return rows if any(r['builds'] for r in rows) else None

    @staticmethod
    def cells(row):
        if not row['builds']:
            return [''] * 5
        return [str(row['builds']), fmtSeconds(row['median']), fmtSeconds(row['p90']),
                '' if row['last'] is None else fmtSeconds(row['last']), fmtTrend(*row['trend'])]

    def render(self, page, model):
        rows = [[page.link(e(r["builder"] or ""), page.url(builder=r["builder"])),
                 *map(e, self.cells(r))] for r in model]
        return page.table(HEADERS, rows, "builders") + page.estimated(
            any(not r['exact'] for r in model))

    def text(self, model):
        return [HEADERS] + [(r['builder'] or '', *self.cells(r)) for r in model]
