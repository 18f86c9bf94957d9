"""``buildbot-stats report STORE``: a terminal summary and a self-contained HTML report."""

from __future__ import annotations

import html
import os
import time

from buildbot_stats import __version__
from buildbot_stats import charts
from buildbot_stats.cli.common import isoTime
from buildbot_stats.cli.common import openStoreOrFail
from buildbot_stats.cli.common import plural
from buildbot_stats.cli.common import printable
from buildbot_stats.cli.safewrite import checkOutput
from buildbot_stats.cli.safewrite import writeText
from buildbot_stats.reading.forms import isStatistic
from buildbot_stats.reading.forms import oneFormPerBuild
# the numbers live with the readers, shared with the Statistics page (buildbot_stats.www)
from buildbot_stats.reading.summary import builderStats
from buildbot_stats.reading.summary import fmtSeconds
from buildbot_stats.reading.summary import fmtTrend
from buildbot_stats.reading.summary import trend

__all__ = ['addParser', 'builderStats', 'collect', 'renderHtml', 'run', 'terminalSummary',
           'trend', 'writeHtml']


def addParser(sub):
    p = sub.add_parser(
        'report', help="summarize a store in the terminal and write an HTML report",
        description="Print, per builder, the number of builds, the median and 90th-percentile "
        "duration and the trend; write a self-contained HTML report with charts (duration "
        "over time per builder, every numeric field of every other series).")
    p.add_argument('store', metavar='STORE', help="the SQLite store (e.g. master/stats.sqlite)")
    p.add_argument('--html', metavar='FILE',
                   help="where to write the HTML report (default: STORE's name with "
                   "'-report.html', next to it); replaced only once complete, never the store")
    p.add_argument('--no-html', action='store_true', help="only print the summary")
    p.set_defaults(func=run)
    return p


def run(args, out):
    target = None if args.no_html else args.html or defaultHtmlPath(args.store)
    with openStoreOrFail(args.store) as store:  # a missing store is named first
        if target is not None:
            checkOutput(target, '--html', protect=args.store,
                        hint="give --html FILE elsewhere, or --no-html")  # before the points
        data = collect(store)
    out.write(terminalSummary(data))
    if target is not None:
        writeHtml(data, target, args.store)
        out.write(f"\nHTML report: {target}\n")
    return 0


def defaultHtmlPath(store_path):
    return os.path.splitext(store_path)[0] + '-report.html'


# -- numbers ------------------------------------------------------------------------------

def isNumber(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def pointBuild(p):
    """``(series, builder, build number)`` of a point (its number a tag or a field), None
    without a build number."""
    number = p.tags.get('build_number', p.fields.get('build_number'))
    return None if number is None else (p.series, p.tags.get('builder_name'), str(number))


def collect(store):
    """Everything the summary and the HTML report show, read once."""
    builds = store.buildDurations()
    series = []
    for info in store.series():
        if info.name.endswith('-build-times'):
            continue  # shown as durations per builder
        fields = {}
        # a build in both forms (reading.forms) counts once, the build number is no figure
        for p in oneFormPerBuild(store.points([info.name]), pointBuild,
                                 lambda p: 'build_number' in p.tags):
            for name, value in p.fields.items():
                if isNumber(value) and isStatistic(name):
                    fields.setdefault(name, []).append((p.time, float(value)))
        series.append((info, fields))
    return {
        'builders': {b: (builderStats(v), v) for b, v in sorted(builds.items())},
        'series': series,
        'points': store.countPoints(),
    }


def terminalSummary(data):
    lines = []
    if not data['builders']:
        lines.append("No build durations in this store (no '<builder>-build-times' series "
                     "with a 'duration' field).")
    else:
        rows = [("builder", "builds", "median", "p90", "last", "trend")]
        for builder, (st, _) in data['builders'].items():
            rows.append((printable(builder), str(st['builds']), fmtSeconds(st['median']),
                         fmtSeconds(st['p90']), fmtSeconds(st['last']), fmtTrend(st)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for n, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
    others = [(info, fields) for info, fields in data['series'] if fields]
    if others:
        lines.append("")
        lines.append("Other series (last value of each numeric field):")
        for info, fields in others:
            last = ", ".join(f"{printable(k)}={charts.formatNumber(v[-1][1])}"
                             for k, v in sorted(fields.items()))
            lines.append(f"  {printable(info.name)}: {plural(info.points, 'point')}; {last}")
    lines.append("")
    lines.append(f"{plural(data['points'], 'point')} in the store.")
    return "\n".join(lines) + "\n"


# -- HTML ------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 820px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; } td, th { padding: 4px 10px; text-align: right; }
th { border-bottom: 1px solid #888; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1.5em 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
.note { color: #666; font-size: 0.9em; }
"""


def chartFigure(kind, name, caption, lines, y_label):
    e = html.escape
    return (f'<figure class="chart" data-kind="{kind}" data-name="{e(name)}">'
            f'<figcaption>{e(caption)}</figcaption>'
            f'{charts.lineChart(lines, y_label=y_label, title=caption)}</figure>')


def renderHtml(data, store_path):
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Build statistics: {e(os.path.basename(store_path))}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Build statistics</h1>",
        f'<p class="note">Store {e(os.path.abspath(store_path))}: '
        f'{plural(data["points"], "point")}. '
        f"Made by buildbot_stats {e(__version__)}; times in UTC; hover a point for its value."
        "</p>",
    ]
    if data['builders']:
        parts.append("<h2>Builders</h2><table><tr><th>builder</th><th>builds</th>"
                     "<th>median</th><th>p90</th><th>last</th><th>trend</th></tr>")
        for builder, (st, _) in data['builders'].items():
            parts.append(f"<tr><td>{e(builder)}</td><td>{st['builds']}</td>"
                         f"<td>{fmtSeconds(st['median'])}</td><td>{fmtSeconds(st['p90'])}</td>"
                         f"<td>{fmtSeconds(st['last'])}</td><td>{e(fmtTrend(st))}</td></tr>")
        parts.append("</table><h2>Build duration over time</h2>")
        for builder, (_, builds) in data['builders'].items():
            lines = [(builder, [(t, d) for t, _, d in builds])]
            parts.append(chartFigure('duration', builder, f"{builder}: build duration",
                                     lines, "seconds"))
    charted = [(info, fields) for info, fields in data['series'] if fields]
    if charted:
        parts.append("<h2>Properties and data over time</h2>")
        for info, fields in charted:
            # a property series has fields name (text) and value: label it by the name
            lines = sorted(fields.items())
            parts.append(chartFigure('series', info.name, info.name, lines, ""))
    skipped = [info.name for info, fields in data['series'] if not fields]
    if skipped:
        parts.append('<p class="note">Series without a numeric field (not charted): '
                     f'{e(", ".join(skipped))}.</p>')
    parts.append(f'<p class="note">Generated {e(isoTime(time.time()))}.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def writeHtml(data, target, store_path, option='--html'):
    """Write the report to ``target`` atomically; never over the store."""
    writeText(target, renderHtml(data, store_path), option, protect=store_path)
