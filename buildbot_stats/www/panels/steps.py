"""Slowest steps: the steps with the highest median duration, with p90 and max."""

from __future__ import annotations

from buildbot_stats.reading.summary import fmtSeconds
from buildbot_stats.www.html import e
from buildbot_stats.www.panels.base import Panel

SLOWEST_STEPS = 15  # rows of the slowest steps table
HEADERS = ("builder", "step", "runs", "median", "p90", "max")


class StepsPanel(Panel):
    id = 'steps'
    title = "Slowest steps"
    captured_by = ('CaptureStepTimes',)
    add_line = "stats.CaptureStepTimes()"
    what = "Step times"

    def compute(self, q):
        """The :data:`SLOWEST_STEPS` ``((builder, step), Stats)`` of the highest median."""
        ranked = sorted(q.summary('steps').items(),
                        key=lambda kv: (-kv[1].median, kv[0][0] or '', kv[0][1] or ''))
        return ranked[:SLOWEST_STEPS]

    @staticmethod
    def rows(model):
        return [(b or '', step or '', str(st.count), fmtSeconds(st.median), fmtSeconds(st.p90),
                 fmtSeconds(st.max)) for (b, step), st in model]

    def render(self, page, model):
        return page.table(HEADERS, [list(map(e, r)) for r in self.rows(model)], "steps") + \
            page.estimated(any(not st.exact for _, st in model))

    def text(self, model):
        return [HEADERS] + self.rows(model)
