"""Slowest steps: the steps with the highest median duration, with p90 and max."""

from __future__ import annotations

from buildbot_stats.reading.summary import fmtSeconds
from buildbot_stats.www.html import e
from buildbot_stats.www.panels.base import Panel

SLOWEST_STEPS = 15  # rows of the slowest steps table


class StepsPanel(Panel):
    id = 'steps'
    title = "Slowest steps"
    reads = {'steps': 'stepSummary'}
    captured_by = ('CaptureStepTimes',)
    add_line = "stats.CaptureStepTimes()"

    def render(self, page, data):
        steps = data['steps']
        if not steps:
            return page.missing(self, "Step times")
        ranked = sorted(steps.items(), key=lambda kv: (-kv[1]['median'], kv[0][0] or '',
                                                       kv[0][1] or ''))
        rows = [[e(b or ''), e(step or ''), str(st['runs']), fmtSeconds(st['median']),
                 fmtSeconds(st['p90']), fmtSeconds(st['max'])]
                for (b, step), st in ranked[:SLOWEST_STEPS]]
        return page.table(("builder", "step", "runs", "median", "p90", "max"), rows, "steps")
