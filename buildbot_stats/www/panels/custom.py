"""Custom series: one chart per series of properties and ``yieldMetricsValue`` data."""

from __future__ import annotations

from buildbot_stats import charts
from buildbot_stats.www.panels import changes
from buildbot_stats.www.panels.base import Panel


def ofSeries(series):
    """Whether a change record is of a field of ``series`` (``<builder>-<name>``: the
    change's series is ``<name>.<field>``)."""
    def pick(record):
        prefix = f"{record['builder']}-"
        return (series.startswith(prefix)
                and record['series'].startswith(series[len(prefix):] + '.'))
    return pick


class CustomPanel(Panel):
    id = 'custom'
    title = "Custom series"
    reads = {'custom': 'customSeries', 'changes': 'changePoints'}
    captured_by = ('CaptureDataBase', 'CapturePropertyBase')
    add_line = ("stats.CaptureDataAllBuilders('<name>') for yieldMetricsValue data, or "
                "stats.CapturePropertyAllBuilders('<property>')")

    def render(self, page, data):
        custom = data['custom']
        if not custom:
            return page.missing(self, "Custom series")
        out = []
        for series, pts in sorted(custom.items()):
            fields = {}
            for t, b, n, numbers in pts:
                for name, v in numbers.items():
                    fields.setdefault(name, []).append((b, t, n, v))
            lines = [(name, page.points(rows, name)) for name, rows in sorted(fields.items())]
            out.append(page.figure('series', series, series,
                                   charts.lineChart(lines, title=series, events=changes.events(
                                       page, data, ofSeries(series)))))
        return "".join(out)
