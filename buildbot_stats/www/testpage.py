"""One test's history: a pass/fail strip (one cell per build, linked to it), its duration
per build, and the counts, for the ``test`` route of the Statistics page."""

from __future__ import annotations

import urllib.parse

from buildbot_stats import charts
from buildbot_stats.reading.summary import fmtShortSeconds
from buildbot_stats.www.html import e
from buildbot_stats.www.html import fullTime
from buildbot_stats.www.page import CSS
from buildbot_stats.www.ranges import RANGES


def testPage(history, builder, test, range_name, builder_ids, ui_root):
    """The HTML document of one test's history (``reader.testHistory(...)``'s list)."""
    builderid = builder_ids.get(builder)

    def href(number):
        if builderid is None or number is None:
            return None
        return f"{ui_root}#/builders/{int(builderid)}/builds/{int(number)}"

    ranges = " ".join(
        f'<a class="range{" current" if r == range_name else ""}" href="'
        + e('test?' + urllib.parse.urlencode({'builder': builder, 'test': test, 'range': r}))
        + f'">{e(r)}</a>' for r in RANGES)
    back = e('view?' + urllib.parse.urlencode({'builder': builder, 'range': range_name}))
    head = (f'<p><a href="{back}">Back to the statistics of {e(builder)}</a> '
            f'<span class="ranges">Range: {ranges}</span></p>')
    if not history:
        body = (f'<p class="message">No result of this test on builder {e(builder)} in this '
                'range.</p>')
        return document(test, builder, range_name, head + body)
    ran = [h for h in history if h['outcome'] is not None]
    counts = {}
    for h in ran:
        counts[h['outcome']] = counts.get(h['outcome'], 0) + 1
    summary = ", ".join(f"{counts[o]} {o}" for o in ('passed', 'failed', 'flaky', 'skipped')
                        if counts.get(o))
    cells = []
    for h in history:
        what = h['outcome'] or "did not run"
        tip = f"build #{h['number']}: {what}"
        if h['duration'] is not None:
            tip += f" in {fmtShortSeconds(h['duration'])}"
        tip += f" at {fullTime(h['time'])} UTC"
        if h['revision']:
            tip += f", revision {h['revision']}"
        cells.append((h['outcome'], tip, href(h['number'])))
    strip = charts.outcomeStrip(cells, title=f"{test}: outcome per build")
    points = [(h['time'], h['duration'], {
        'tip': f"build #{h['number']}: {fmtShortSeconds(h['duration'])} ({h['outcome']}) at "
               f"{fullTime(h['time'])} UTC", 'href': href(h['number'])})
        for h in ran if h['duration'] is not None]
    chart = charts.lineChart([("duration", points)], y_label="seconds",
                             title=f"{test}: duration per build", styles={'duration': 'points'})
    last_failure = next((h for h in reversed(ran) if h['outcome'] in ('failed', 'flaky')),
                        None)
    failure = ""
    if last_failure is not None:
        label = f"#{last_failure['number']} {fullTime(last_failure['time'])}"
        link = href(last_failure['number'])
        failure = (f' Last failure: <a href="{e(link)}" target="_top">{e(label)}</a>.'
                   if link else f" Last failure: {e(label)}.")
    body = (f'<p class="counts">{len(history)} builds of {e(builder)}: {e(summary)}.{failure}'
            '</p>'
            f'<figure class="chart" data-kind="outcomes"><figcaption>Outcome per build '
            '(green passed, red failed, orange flaky: passed on a rerun, grey skipped, white '
            f'not run)</figcaption>{strip}</figure>'
            f'<figure class="chart" data-kind="test-duration"><figcaption>Duration per build'
            f'</figcaption>{chart}</figure>')
    return document(test, builder, range_name, head + body)


def document(test, builder, range_name, body):
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<title>Test {e(test)} on {e(builder)}</title><style>{CSS}</style></head><body>'
            f'<h1>Test <code>{e(test)}</code> on {e(builder)}, {e(range_name)}</h1>{body}'
            '<p class="note">Times in UTC; hover a build for its result, click it to open the '
            'build.</p></body></html>')
