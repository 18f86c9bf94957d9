"""Custom series: properties and ``yieldMetricsValue`` data, one chart per series and unit
(fields of different units never share an axis)."""

from __future__ import annotations

from buildbot_stats import charts
from buildbot_stats.www.panels import changes
from buildbot_stats.www.panels.base import Panel

HEADERS = ("series", "field", "points", "median", "min", "max")


def unitOf(field):
    """The unit a field's name says (seconds, %, bytes), else the field itself: fields share
    an axis only when they share a unit."""
    f = field.lower()
    if f in ('duration', 'elapsed', 'time') or f.endswith(
            ('_time', '-time', '_seconds', '_secs', '_duration', '-duration')):
        return 'seconds'
    if 'percent' in f or f.endswith(('_pct', '%', '_ratio_pct')):
        return '%'
    if f.endswith(('bytes', '_size')) or f == 'size':
        return 'bytes'
    return field


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
    captured_by = ('CaptureDataBase', 'CapturePropertyBase')
    add_line = ("stats.CaptureDataAllBuilders('<name>') for yieldMetricsValue data, or "
                "stats.CapturePropertyAllBuilders('<property>')")
    what = "Custom series"

    def compute(self, q):
        """``[{'series', 'stats': {field: Stats}, 'units': [(unit, [field])], 'points':
        [(time, builder, number, {field: value})] or None, 'periods': {field: [(period
        start, Stats)]} or None, 'changes': [change record of its fields]}]``."""
        stats = q.summary('custom')
        if not stats:
            return None
        by_series = {}
        for (series, field), st in stats.items():
            by_series.setdefault(series, {})[field] = st
        raw = periods = None
        if q.drawBuilds(max(st.count for fields in by_series.values()
                            for st in fields.values())):
            raw = q.window('customSeries')
        else:
            periods = q.summary('custom', per_period=True)
        out = []
        for series, fields in sorted(by_series.items()):
            units = {}
            for field in sorted(fields):
                units.setdefault(unitOf(field), []).append(field)
            out.append({'series': series, 'stats': fields, 'units': sorted(units.items()),
                        'points': None if raw is None else raw.get(series, []),
                        'periods': None if periods is None else {
                            f: periods.get((series, f), []) for f in fields},
                        'changes': changes.changesOf(q, ofSeries(series))})
        return out

    def render(self, page, model):
        out = []
        for s in model:
            for unit, fields in s['units']:
                if s['points'] is not None:
                    lines = [(f, page.points([(b, t, n, v[f]) for t, b, n, v in s['points']
                                              if f in v], f)) for f in fields]
                else:
                    lines = [(f"{f} (median per {page.periodWord()})",
                              page.periodMarks(s['periods'][f], f, 'median', "points"))
                             for f in fields]
                name = s['series'] if len(s['units']) == 1 else f"{s['series']} ({unit})"
                label = unit if unit in ('seconds', '%', 'bytes') else ""
                marks = changes.events(page, s['changes'], lambda r, fields=fields: r[
                    'series'].rpartition('.')[2] in fields)
                out.append(page.figure('series', name, name,
                                       page.chart(lines, label, name, marks)))
        return "".join(out)

    def text(self, model):
        rows = [HEADERS]
        for s in model:
            for field, st in sorted(s['stats'].items()):
                rows.append((s['series'], field, str(st.count), charts.formatNumber(st.median),
                             charts.formatNumber(st.min), charts.formatNumber(st.max)))
        return rows
