"""The Statistics page: the data of every panel read once, then the page around the panels
(:mod:`buildbot_stats.www.panels`), as HTML with inline SVG charts
(:mod:`buildbot_stats.charts`). No script, no CDN: the filters are links and a GET form,
the hover is SVG ``<title>``, a point is a link to its build.

Every text from the store (builder, step, series names...) goes through
``html.escape`` (or ``urlencode`` in a URL) before it reaches the HTML.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import urllib.parse

from buildbot_stats import charts
from buildbot_stats.www.html import e
from buildbot_stats.www.html import fullTime
from buildbot_stats.www.panels import PANELS
from buildbot_stats.www.panels.base import Query
from buildbot_stats.www.panels.base import periodWord
from buildbot_stats.www.ranges import RANGES


def collect(reader, builder, start, end, now, known=None):
    """Every panel's model for one view: :meth:`Panel.compute` of each, through one
    :class:`~buildbot_stats.www.panels.base.Query` (each reader question asked once), in
    one read transaction of an SQLite store (one state of the file); ``known``: ``{panel
    id: model}`` kept from an earlier view (the per-test tables), not computed again.
    A reader whose ``threads`` is more than 1 (InfluxDB: the work is the server's, on
    other cores) has the panels computed by that many threads at once, so that one
    panel's questions wait on the server while another's answers are decoded."""
    known = known or {}
    transaction = getattr(reader, 'readTransaction', None)
    with (transaction() if transaction is not None else contextlib.nullcontext()):
        q = Query(reader, builder, start, end, now)
        threads = getattr(reader, 'threads', 1)
        todo = [panel for panel in PANELS if panel.id not in known]
        if threads > 1 and len(todo) > 1:
            with concurrent.futures.ThreadPoolExecutor(
                    threads, thread_name_prefix='buildbot_stats-view') as pool:
                names = pool.submit(_builderNames, q, reader)
                models = dict(zip((panel.id for panel in todo),
                                  pool.map(lambda panel: panel.compute(q), todo)))
                names = names.result()
        else:
            names = _builderNames(q, reader)
            models = {panel.id: panel.compute(q) for panel in todo}
        data = {'builder_names': names, 'period': q.period}
        for panel in PANELS:
            data[panel.id] = known[panel.id] if panel.id in known else models[panel.id]
    return data


def _builderNames(q, reader):
    return sorted(set(q.ask('builderNames')) | _testBuilders(reader))


def _testBuilders(reader):
    """The builders with per-test results (the filter lists them too)."""
    runs = getattr(reader, 'testRuns', None)
    return {r.builder for r in runs()} if runs is not None else set()


def view(reader, builder, range_name, start, end, builder_ids, ui_root, captures,
         source_name, now, cache=None, tests_cache=None, notices=(), facts=(),
         detection=None):
    """The HTML of one view: :func:`collect` then :meth:`Page.render`, or the text a
    :class:`~buildbot_stats.www.cache.ViewCache` kept of the same view of the same store
    state (``reader.stateKey()``; None: not cached). With ``tests_cache`` (a ViewCache),
    the per-test tables of an SQLite store are kept while its test results do not change
    (``reader.testsStateKey()``): a build without test results does not make them be
    computed again. ``notices``: warnings the page shows above its panels, ``facts``:
    sentences under them (:mod:`buildbot_stats.www.notices`);
    ``detection``: why change detection is off, None when it runs (or is not known)."""
    notices, facts = tuple(notices), tuple(facts)
    key = None
    state = reader.stateKey() if cache is not None else None
    if state is not None:
        # the window (start, end) moves with the clock: the range's name is the key, the
        # cache's max_age bounds how far the window may have moved
        key = (state, builder, range_name, tuple(sorted(builder_ids.items())), ui_root,
               None if captures is None else tuple(sorted(captures)), source_name, notices,
               facts, detection)
        text = cache.get(key, now)
        if text is not None:
            return text
    tests_key, known = None, {}
    tests_state = getattr(reader, 'testsStateKey', None)
    if tests_cache is not None and tests_state is not None:
        tests_key = (tests_state(), builder, range_name)
        model = tests_cache.get(tests_key, now)
        if model is not None:
            known[TESTS_PANEL] = model
    data = collect(reader, builder, start, end, now, known)
    if tests_key is not None and TESTS_PANEL not in known:
        tests_cache.put(tests_key, now, data[TESTS_PANEL])
    text = Page(data, builder, range_name, builder_ids, ui_root, captures, source_name,
                now, notices, facts, detection=detection).render()
    if key is not None:
        cache.put(key, now, text)
    return text


#: the panel of the per-test tables (TestCasesPanel), kept by ``view``'s ``tests_cache``
TESTS_PANEL = 'test-cases'


class Page:
    """Renders one view. ``builder_ids``: ``{builder name: builderid}`` for the links to
    the builds (``#/builders/<id>/builds/<n>``); ``ui_root``: the URL of Buildbot's UI
    relative to this page; ``captures``: the configured capture class names (None:
    unknown); ``notices`` and ``facts``: see :func:`view`; ``detection``: why change
    detection is off (None: it runs, or unknown)."""

    def __init__(self, data, builder, range_name, builder_ids, ui_root, captures,
                 source_name, now, notices=(), facts=(), links=True, detection=None):
        self.data, self.builder, self.range = data, builder, range_name
        self.builder_ids, self.ui_root = builder_ids, ui_root
        self.captures, self.source_name, self.now = captures, source_name, now
        self.notices, self.facts = list(notices), list(facts)
        self.detection = detection
        # False: a file of its own (buildbot-stats report), no link anywhere
        self.links = links

    def link(self, text, href, top=False):
        """``text`` (HTML) as a link to ``href``, or alone without links or href."""
        if not self.links or not href:
            return text
        target = ' target="_top"' if top else ''
        return f'<a href="{e(href)}"{target}>{text}</a>'

    # -- small pieces ---------------------------------------------------------------------

    def url(self, builder=..., range_name=None):
        builder = self.builder if builder is ... else builder
        params = {'range': range_name or self.range}
        if builder:
            params['builder'] = builder
        return 'view?' + urllib.parse.urlencode(params)

    def testUrl(self, builder, test):
        """The history page of one test (a route of this app, beside ``view``); None
        without links (``buildbot-stats report``)."""
        if not self.links:
            return None
        return 'test?' + urllib.parse.urlencode({'builder': builder, 'test': test,
                                                 'range': self.range})

    def buildHref(self, builder, number):
        builderid = self.builder_ids.get(builder)
        if builderid is None or number is None or not self.links:
            return None
        return f"{self.ui_root}#/builders/{int(builderid)}/builds/{int(number)}"

    def point(self, builder, t, number, value, what, fmt=charts.formatNumber):
        tip = f"{builder} build #{number}: {what} {fmt(value)} at {fullTime(t)} UTC"
        return (t, value, {'tip': tip, 'href': self.buildHref(builder, number)})

    def points(self, rows, what, fmt=charts.formatNumber):
        """``rows``: ``[(builder, time, number, value), ...]``. Chart points with hover and
        link (a panel draws each build only when few: :data:`MAX_BUILD_MARKS`)."""
        return [self.point(b, t, n, v, what, fmt) for b, t, n, v in rows]

    def missing(self, panel):
        """The text of a panel without data: what to add to master.cfg, or no data."""
        configured = (None if self.captures is None
                      else any(c in self.captures for c in panel.captured_by))
        add = (f'Add <code>{e(panel.add_line)}</code> to the <code>captures</code> of a '
               'storage backend in <code>master.cfg</code>.')
        if configured is False:
            text = f"{e(panel.what)} are not captured. {add}"
        elif configured:
            text = f"No {e(panel.what.lower())} in this range."
        else:
            text = f"No {e(panel.what.lower())} in this range. If they are not captured: {add}"
        return f'<p class="missing" data-panel="{panel.id}">{text}</p>'

    @staticmethod
    def figure(kind, name, caption, chart):
        return (f'<figure class="chart" data-kind="{kind}" data-name="{e(name)}">'
                f'<figcaption>{e(caption)}</figcaption>{chart}</figure>')

    @staticmethod
    def chart(lines, y_label, title, events=()):
        """A line chart; lines named "... builds" or plain points are dots, "p90 ..." dashed;
        ``events``: where changes began (:func:`buildbot_stats.www.panels.changes.events`)."""
        styles = {}
        for label, _ in lines:
            if label.endswith(' builds'):
                styles[label] = 'points'
            elif label.startswith('p90 '):
                styles[label] = 'dashed'
        return charts.lineChart(lines, y_label=y_label, title=title, styles=styles,
                                events=events)

    @staticmethod
    def table(headers, rows, kind):
        out = [f'<table class="{kind}"><tr>']
        out.extend(f"<th>{e(h)}</th>" for h in headers)
        out.append("</tr>")
        for row in rows:
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
        out.append("</table>")
        return "".join(out)

    @staticmethod
    def estimated(any_estimate):
        """The note under a table whose medians and p90 come from rollups' sketches."""
        if not any_estimate:
            return ""
        return ('<p class="note estimated">Medians and 90th percentiles of many builds are '
                'computed from the rollups: within 1% of the exact ones.</p>')

    def periodWord(self):
        return periodWord(self.data['period'])

    def periodMarks(self, periods, what, stat, unit, fmt=charts.formatNumber):
        """The marks of one statistic (``'median'``, ``'p90'``, ``'mean'``) of
        ``[(period start, Stats)]``, each in the middle of its period, with its hover."""
        period, word = self.data['period'], self.periodWord()
        out = []
        for t, st in periods:
            v = getattr(st, stat)
            if v is None:
                continue
            tip = (f"{what} {stat} of the {word} from {fullTime(t)} UTC: {fmt(v)} "
                   f"({st.count} {unit})")
            out.append((t + period / 2, v, {'tip': tip}))
        return out

    def periodLines(self, periods, what, unit, fmt=charts.formatNumber):
        """The median and p90 per period of ``[(period start, Stats)]`` as two lines."""
        if not periods:
            return []
        word = self.periodWord()
        return [(f"median per {word}", self.periodMarks(periods, what, 'median', unit, fmt)),
                (f"p90 per {word}", self.periodMarks(periods, what, 'p90', unit, fmt))]

    # -- the whole page -----------------------------------------------------------------------

    def filters(self):
        ranges = " ".join(
            f'<a class="range{" current" if r == self.range else ""}" '
            f'href="{e(self.url(range_name=r))}">{e(r)}</a>' for r in RANGES)
        options = ['<option value="">all builders</option>']
        for b in self.data['builder_names']:
            sel = ' selected' if b == self.builder else ''
            options.append(f'<option value="{e(b)}"{sel}>{e(b)}</option>')
        return (f'<form class="filters" method="get" action="view">'
                f'<label>Builder <select name="builder">{"".join(options)}</select></label>'
                f'<input type="hidden" name="range" value="{e(self.range)}">'
                f' <button type="submit">Show</button>'
                f' <span class="ranges">Range: {ranges}</span></form>')

    def sections(self):
        return "".join(
            f'<section id="{panel.id}"><h2>{e(panel.title)}</h2>'
            f'{panel.render(self, self.data[panel.id]) if self.data[panel.id] else self.missing(panel)}'
            '</section>' for panel in PANELS)

    def warnings(self):
        return "".join(f'<p class="warning" data-warning="series-limit">{e(text)}</p>'
                       for text in self.notices)

    def notes(self):
        return "".join(f'<p class="note" data-note="series">{e(text)}</p>'
                       for text in self.facts)

    def render(self):
        scope = f"builder {self.builder}" if self.builder else "all builders"
        body = self.sections()
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<title>Statistics: {e(scope)}</title><style>{CSS}</style></head><body>'
            f'<h1>Build statistics: {e(scope)}, {e(self.range)}</h1>{self.warnings()}'
            f'{self.filters()}'
            f'{body}<p class="note">From the {e(self.source_name)}. Times in UTC; hover a '
            f'point for its build, click it to open the build.</p>{self.notes()}</body></html>')


def messagePage(title, text):
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}'
            f'</title><style>{CSS}</style></head><body><h1>{e(title)}</h1>'
            f'<p class="message">{e(text)}</p></body></html>')


CSS = """
body { font-family: system-ui, sans-serif; margin: 1em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { padding: 3px 10px; text-align: right; }
th { border-bottom: 1px solid #888; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
.filters a.range { margin: 0 .3em; } .filters a.current { font-weight: 700; }
.bar { display: inline-block; width: 80px; height: 10px; background: #f3c4c4; }
.bar span { display: block; height: 10px; background: #2ca02c; }
.missing, .note, .none, .scope { color: #666; } h3 { font-size: 1em; margin: 1em 0 .3em; }
a.test { font-family: ui-monospace, monospace; font-size: .92em; } code { background: #f4f4f4; padding: 0 3px; }
.warning { background: #fff3cd; border: 1px solid #e0c36c; padding: .5em .8em; }
.worse { color: #b71c1c; font-weight: 600; } .better { color: #1b5e20; font-weight: 600; }
svg a circle { cursor: pointer; }
"""
