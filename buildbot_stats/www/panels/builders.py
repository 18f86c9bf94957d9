"""The builders table: builds, median, 90th percentile, last duration and trend."""

from __future__ import annotations

from buildbot_stats.reading import summary
from buildbot_stats.reading.summary import fmtSeconds
from buildbot_stats.reading.summary import fmtTrend
from buildbot_stats.www.html import e
from buildbot_stats.www.panels.base import Panel
from buildbot_stats.www.panels.durations import DurationsPanel


class BuildersPanel(Panel):
    id = 'builders'
    title = "Builders"
    reads = {'durations': 'buildDurations', 'results': 'buildResults'}
    # without durations the table is empty: it asks for what the durations panel asks for
    captured_by = DurationsPanel.captured_by
    add_line = DurationsPanel.add_line

    def render(self, page, data):
        durations, results = data['durations'], data['results']
        names = sorted(set(durations) | set(results))
        if not names:
            return page.missing(self, "Build durations")
        rows = []
        for b in names:
            link = f'<a href="{e(page.url(builder=b))}">{e(b)}</a>'
            if b in durations:
                st = summary.builderStats(durations[b])
                cells = [str(st['builds']), fmtSeconds(st['median']), fmtSeconds(st['p90']),
                         fmtSeconds(st['last']), e(fmtTrend(st))]
            else:
                cells = [''] * 5
            rows.append([link, *cells])
        return page.table(("builder", "builds", "median", "p90", "last", "trend"), rows,
                          "builders")
