"""Success rate and failures: per builder, the builds by verdict and the last failure."""

from __future__ import annotations

from buildbot_stats.reading import summary
from buildbot_stats.www.html import e
from buildbot_stats.www.html import fullTime
from buildbot_stats.www.panels.base import Panel


class ResultsPanel(Panel):
    id = 'results'
    title = "Success rate and failures"
    reads = {'results': 'buildResults'}
    captured_by = ('CaptureBuildResults',)
    add_line = "stats.CaptureBuildResults()"

    def render(self, page, data):
        results = data['results']
        if not results:
            return page.missing(self, "Build results")
        rows = []
        for b, rs in sorted(results.items()):
            c = summary.resultCounts(rs)
            rate = "" if c['rate'] is None else (
                f'<span class="bar"><span style="width:{c["rate"] * 100:.0f}%"></span></span> '
                f'{c["rate"] * 100:.0f}%')
            failures = [r for r in rs if r[2] not in summary.PASSED_RESULTS
                        and r[2] not in summary.NOT_COUNTED_RESULTS]
            last = ""
            if failures:
                t, n, result = failures[-1]
                href = page.buildHref(b, n)
                label = f"#{n} {e(str(result))} {e(fullTime(t))}"
                last = f'<a href="{e(href)}" target="_top">{label}</a>' if href else label
            rows.append([e(b), str(c['builds']), str(c['passed']), str(c['failed']),
                         str(c['other']), rate, last])
        return page.table(("builder", "builds", "passed", "failed", "other", "success rate",
                           "last failure"), rows, "results")
