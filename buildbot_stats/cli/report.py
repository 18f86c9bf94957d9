"""``buildbot-stats report STORE``: a terminal summary and a self-contained HTML report of the
Statistics page's panels (the same numbers: :mod:`buildbot_stats.www.panels`), from an
SQLite store or an InfluxDB 1.x database (``--influxdb URL --db NAME``)."""

from __future__ import annotations

import html
import os
import time

from buildbot_stats import __version__
from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import addInfluxArguments
from buildbot_stats.cli.common import influxSettings
from buildbot_stats.cli.common import isoTime
from buildbot_stats.cli.common import openStoreOrFail
from buildbot_stats.cli.common import plural
from buildbot_stats.cli.common import printable
from buildbot_stats.cli.safewrite import checkOutput
from buildbot_stats.cli.safewrite import writeText
# the numbers of the Statistics page, computed by its panels from the reader
from buildbot_stats.reading.summary import builderStats
from buildbot_stats.reading.summary import trend
from buildbot_stats.www.page import CSS as PAGE_CSS
from buildbot_stats.www.page import Page
from buildbot_stats.www.page import collect as collectPanels
from buildbot_stats.www.panels import PANELS
from buildbot_stats.www.panels.base import periodWord
from buildbot_stats.www.ranges import RANGES
from buildbot_stats.www.ranges import timeWindow

__all__ = ['addParser', 'builderStats', 'collect', 'renderHtml', 'run', 'terminalSummary',
           'trend', 'writeHtml']


def addParser(sub):
    p = sub.add_parser(
        'report', help="summarize a store in the terminal and write an HTML report",
        description="Print the Statistics page's tables (builders with the median and "
        "90th-percentile duration and the trend, success rates, queue times, slowest steps, "
        "tests, custom series) and write a self-contained HTML report with its charts, from "
        "an SQLite store or an InfluxDB 1.x database.")
    p.add_argument('store', metavar='STORE', nargs='?',
                   help="the SQLite store (e.g. master/stats.sqlite); not with --influxdb")
    addInfluxArguments(p)
    p.add_argument('--range', choices=tuple(RANGES), default='all',
                   help="the last 24h, 7d, 30d or everything (default: all)")
    p.add_argument('--builder', metavar='NAME', help="one builder only (default: all)")
    p.add_argument('--html', metavar='FILE',
                   help="where to write the HTML report (default: STORE's name with "
                   "'-report.html', next to it; with --influxdb: DB-report.html here); "
                   "replaced only once complete, never the store")
    p.add_argument('--no-html', action='store_true', help="only print the summary")
    p.set_defaults(func=run)
    return p


def readerSettings(args):
    """The :class:`InfluxReader` arguments of ``--influxdb``, None for a store; checks the
    arguments (a :class:`CliError` names the mistake)."""
    if args.influxdb is None:
        if args.store is None:
            raise CliError("give STORE, or --influxdb URL --db NAME")
        if args.db or args.user:
            raise CliError("--db and --user go with --influxdb")
        return None
    if args.store is not None:
        raise CliError("give STORE or --influxdb URL --db NAME, not both")
    return influxSettings(args)


def openReader(args, settings):
    """The reader the arguments name, and a short description of it."""
    if settings is None:
        return openStoreOrFail(args.store), f"SQLite store {os.path.abspath(args.store)}"
    from buildbot_stats.reading.influxdb import InfluxReader

    return InfluxReader(**settings), f"InfluxDB {args.influxdb} db {args.db}"


def run(args, out):
    settings = readerSettings(args)
    target = None
    if not args.no_html:
        target = args.html or (defaultHtmlPath(args.store) if settings is None
                               else f"{args.db}-report.html")
    reader, source = openReader(args, settings)  # a missing store is named first
    with reader:
        if target is not None:
            checkOutput(target, '--html', protect=args.store,
                        hint="give --html FILE elsewhere, or --no-html")  # before the points
        now = time.time()
        start, end = timeWindow(args.range, now)
        data = collect(reader, args.builder, start, end, now)
    data.update(source=source, range=args.range, builder=args.builder)
    out.write(terminalSummary(data))
    if target is not None:
        writeHtml(data, target, args.store)
        out.write(f"\nHTML report: {target}\n")
    return 0


def defaultHtmlPath(store_path):
    return os.path.splitext(store_path)[0] + '-report.html'


def collect(reader, builder=None, start=None, end=None, now=None):
    """Every panel's model (the page's :func:`~buildbot_stats.www.page.collect`)."""
    now = time.time() if now is None else now
    data = collectPanels(reader, builder, start, end, now)
    data.update(now=now, source=getattr(reader, 'path', ''), range='all', builder=builder)
    return data


# -- the terminal -----------------------------------------------------------------------------

def table(rows):
    """Aligned columns: the first row is the header; a column of numbers to the right."""
    rows = [tuple(printable(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = [i > 0 and all(_numeric(r[i]) for r in rows[1:] if r[i]) for i in range(len(widths))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.rjust(w) if right[i] else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _numeric(text):
    return text[:1].isdigit() or text[:1] in ('+', '-', '.') and text[1:2].isdigit()


def terminalSummary(data):
    lines = []
    for panel in PANELS:
        model = data.get(panel.id)
        if not model:
            if panel.id == 'builders':
                lines += ["No build durations in this range (no '<builder>-build-times' "
                          "series with a 'duration' field).", ""]
            continue
        rows = panel.text(model)
        if not rows:
            continue
        if panel.id != 'builders':
            lines.append(f"{panel.title}:")
        lines += table(rows)
        lines.append("")
    builds = sum(r['builds'] for r in data.get('builders') or [])
    lines.append(f"{plural(builds, 'build')} of {plural(len(data['builder_names']), 'builder')}"
                 f"{'' if data.get('range', 'all') == 'all' else ' in the last ' + data['range']}"
                 f"; charts per {periodWord(data['period'])} beyond "
                 "a few hundred builds.")
    return "\n".join(lines) + "\n"


# -- HTML ------------------------------------------------------------------------------------

CSS = PAGE_CSS + """
body { max-width: 820px; margin: 2em auto; }
"""


def renderHtml(data, store_path=None):
    e = html.escape
    page = Page(data, data.get('builder'), data.get('range', 'all'), {}, '', None,
                data.get('source') or store_path or '', data['now'], links=False)
    scope = f"builder {data['builder']}" if data.get('builder') else "all builders"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Build statistics: {e(scope)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Build statistics: {e(scope)}, {e(data.get('range', 'all'))}</h1>",
        f'<p class="note">From the {e(data.get("source") or store_path or "")}. Made by '
        f"buildbot_stats {e(__version__)}; times in UTC; hover a point for its value.</p>",
        page.sections(),
        f'<p class="note">Generated {e(isoTime(data["now"]))}.</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def writeHtml(data, target, store_path, option='--html'):
    """Write the report to ``target`` atomically; never over the store."""
    writeText(target, renderHtml(data, store_path), option, protect=store_path)
