"""Success rate and failures: per builder, the builds by verdict and the last failure."""

from __future__ import annotations

from buildbot_stats.reading.summary import NOT_COUNTED_RESULTS
from buildbot_stats.reading.summary import PASSED_RESULTS
from buildbot_stats.www.html import e
from buildbot_stats.www.html import fullTime
from buildbot_stats.www.panels.base import Panel

HEADERS = ("builder", "builds", "passed", "failed", "other", "success rate", "last failure")


class ResultsPanel(Panel):
    id = 'results'
    title = "Success rate and failures"
    captured_by = ('CaptureBuildResults',)
    add_line = "stats.CaptureBuildResults()"
    what = "Build results"

    def compute(self, q):
        """``[{'builder', 'builds', 'passed', 'failed', 'other', 'rate', 'last_failure':
        (time, number, result) or None}]``; ``rate`` is passed / (passed + failed), None
        without a verdict; failed counts failure and exception."""
        counts = {}
        for (b, result), st in q.summary('results').items():
            c = counts.setdefault(b, {'passed': 0, 'failed': 0, 'other': 0})
            word = ('passed' if result in PASSED_RESULTS else
                    'other' if result in NOT_COUNTED_RESULTS else 'failed')
            c[word] += st.count
        last = q.window('lastFailures')
        rows = []
        for b, c in sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or '')):
            verdicts = c['passed'] + c['failed']
            rows.append({'builder': b, 'builds': verdicts + c['other'], **c,
                         'rate': c['passed'] / verdicts if verdicts else None,
                         'last_failure': last.get(b)})
        return rows

    def render(self, page, model):
        rows = []
        for r in model:
            rate = "" if r['rate'] is None else (
                f'<span class="bar"><span style="width:{r["rate"] * 100:.0f}%"></span></span> '
                f'{r["rate"] * 100:.0f}%')
            last = ""
            if r['last_failure']:
                t, n, result = r['last_failure']
                href = page.buildHref(r['builder'], n)
                label = (f"#{n} " if n is not None else "") + f"{e(str(result))} {e(fullTime(t))}"
                last = page.link(label, href, top=True)
            rows.append([e(r['builder'] or ''), str(r['builds']), str(r['passed']),
                         str(r['failed']), str(r['other']), rate, last])
        return page.table(HEADERS, rows, "results")

    def text(self, model):
        out = [HEADERS]
        for r in model:
            last = ''
            if r['last_failure']:
                t, n, result = r['last_failure']
                last = (f"#{n} " if n is not None else "") + f"{result} {fullTime(t)}"
            out.append((r['builder'] or '', str(r['builds']), str(r['passed']),
                        str(r['failed']), str(r['other']),
                        '' if r['rate'] is None else f"{r['rate'] * 100:.0f}%", last))
        return out
