"""Queue time: per builder, how long build requests waited, and per period."""

from __future__ import annotations

import statistics

from buildbot_stats import charts
from buildbot_stats.reading import summary
from buildbot_stats.reading.changes import QUEUE
from buildbot_stats.reading.summary import fmtSeconds
from buildbot_stats.www.html import e
from buildbot_stats.www.panels import changes
from buildbot_stats.www.panels.base import Panel


class QueuePanel(Panel):
    id = 'queue'
    title = "Queue time"
    reads = {'queue': 'queueTimes', 'changes': 'changePoints'}
    captured_by = ('CaptureQueueTimes',)
    add_line = "stats.CaptureQueueTimes()"

    def render(self, page, data):
        queue = data['queue']
        if not queue:
            return page.missing(self, "Queue times")
        rows = []
        for b, qs in sorted(queue.items()):
            values = [v for _, _, v in qs]
            rows.append([e(b), str(len(values)), fmtSeconds(statistics.median(values)),
                         fmtSeconds(summary.percentile(values, 0.9)),
                         fmtSeconds(max(values))])
        table = page.table(("builder", "builds", "median", "p90", "max"), rows, "queue")
        every = [(t, v) for qs in queue.values() for t, _, v in qs]
        lines = page.periodLines(every, "queue time")
        chart = page.figure('queue', 'queue', "Queue time per period",
                            charts.lineChart(lines, y_label="seconds", title="Queue time",
                                             styles={lines[1][0]: 'dashed'},
                                             events=changes.events(
                                                 page, data, lambda r: r['series'] == QUEUE)))
        return table + chart
