"""Queue time: per builder, how long build requests waited, and per period."""

from __future__ import annotations

from buildbot_stats.reading.changes import QUEUE
from buildbot_stats.reading.summary import fmtSeconds
from buildbot_stats.www.html import e
from buildbot_stats.www.panels import changes
from buildbot_stats.www.panels.base import Panel

HEADERS = ("builder", "builds", "median", "p90", "max")


class QueuePanel(Panel):
    id = 'queue'
    title = "Queue time"
    captured_by = ('CaptureQueueTimes',)
    add_line = "stats.CaptureQueueTimes()"
    what = "Queue times"

    def compute(self, q):
        """``{'builders': {builder: Stats}, 'periods': [(period start, Stats)], 'changes':
        [change record]}`` (the periods of every builder's requests together)."""
        stats = q.summary('queue')
        if not stats:
            return None
        return {'builders': stats,
                'periods': q.summary('queue', per_period=True, by_builder=False).get(None, []),
                'changes': changes.changesOf(q, lambda r: r['series'] == QUEUE)}

    @staticmethod
    def rows(model):
        return [(b or '', str(st.count), fmtSeconds(st.median), fmtSeconds(st.p90),
                 fmtSeconds(st.max))
                for b, st in sorted(model['builders'].items(),
                                    key=lambda kv: (kv[0] is None, kv[0] or ''))]

    def render(self, page, model):
        table = page.table(HEADERS, [list(map(e, r)) for r in self.rows(model)], "queue")
        lines = page.periodLines(model['periods'], "queue time", "requests", fmtSeconds)
        chart = page.figure('queue', 'queue', "Queue time per period",
                            page.chart(lines, "seconds", "Queue time",
                                       changes.events(page, model['changes'])))
        return table + page.estimated(
            any(not st.exact for st in model['builders'].values())) + chart

    def text(self, model):
        return [HEADERS] + self.rows(model)
