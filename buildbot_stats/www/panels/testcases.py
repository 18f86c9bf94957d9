"""Flaky, failing and slow tests: the tables of the per-test history (CaptureTestHistory),
each test a link to its own history page (``test?builder=...&test=...``)."""

from __future__ import annotations

from buildbot_stats.analysis.tests import slowdownWords
from buildbot_stats.reading.summary import fmtShortSeconds as fmtSeconds
from buildbot_stats.www.html import e
from buildbot_stats.www.html import fullTime
from buildbot_stats.www.panels.base import Panel

#: characters of a test name shown in a table (the whole name is its hover text)
SHOWN_NAME = 110


class TestCasesPanel(Panel):
    __test__ = False  # not a test case, whatever pytest thinks of the name

    id = 'test-cases'
    title = "Flaky, failing and slow tests"
    captured_by = ('CaptureTestHistory',)
    add_line = "stats.CaptureTestHistory()"
    what = "Per-test results"

    def compute(self, q):
        """The reader's ``testAnswers`` of the view (every table, read once: see
        :meth:`buildbot_stats.reading.tests.TestQueries.testAnswers`); None without a build
        with per-test results. Not from the rollups: the test results are never rolled up;
        its reads start from the failures' index and the builds of the range."""
        answers = q.window('testAnswers')
        return answers if answers and answers.get('builds') else None

    def render(self, page, answers):
        out = [f'<p class="scope">{answers["builds"]} builds with test results'
               f'{", " + str(answers["tests"]) + " tests in the latest" if answers["tests"] else ""}'
               '.</p>']
        out.append(self.section(page, "Flaky tests", 'flaky', answers['flaky'],
                                ("test", "builder", "flip rate", "failed builds", "why",
                                 "last failure"), self.flakyRow,
                                "No flaky test: none failed and passed on the same revision "
                                "or buildset, flipped often, or passed only on a rerun."))
        out.append(self.section(page, "Tests failing most", 'failing', answers['failing'],
                                ("test", "builder", "failed builds", "last failure",
                                 "first failure"), self.failingRow, "No test failed."))
        out.append(self.section(page, "Tests failing now", 'new-failures',
                                answers['new_failures'],
                                ("test", "builder", "failing since", "builds", ""),
                                self.newRow, "No test fails in its builder's latest build."))
        out.append(self.section(page, "Slowest tests", 'slowest', answers['slowest'],
                                ("test", "builder", "median", "max", "last"), self.slowRow,
                                "No test durations."))
        out.append(self.section(page, "Tests getting slower", 'slowing', answers['slowing'],
                                ("test", "builder", "before", "after", "change", "since"),
                                self.slowingRow, "No test got slower over the latest builds."))
        method, install = slowdownWords(answers.get('slowing_method'))
        out.append(f'<p class="note" data-table="slowing-method">{e(method)}'
                   + (f' <code>{e(install)}</code>.' if install else '') + '</p>')
        return "".join(out)

    def section(self, page, heading, kind, rows, headers, row, empty):
        if not rows:
            return f'<h3>{e(heading)}</h3><p class="none" data-table="{kind}">{e(empty)}</p>'
        return (f'<h3>{e(heading)}</h3>'
                + page.table(headers, [row(page, r) for r in rows], f'tests-{kind}'))

    # -- cells --------------------------------------------------------------------------------

    @staticmethod
    def testLink(page, builder, test):
        shown = test if len(test) <= SHOWN_NAME else test[:SHOWN_NAME - 1] + "\u2026"
        href = page.testUrl(builder, test)
        if href is None:  # the report: no page to link to
            return f'<span class="test" title="{e(test)}">{e(shown)}</span>'
        return (f'<a class="test" href="{e(href)}" title="{e(test)}">'
                f'{e(shown)}</a>')

    @staticmethod
    def buildLink(page, builder, build):
        if not build:
            return ""
        label = f"#{build['number']} {fullTime(build['time'])}"
        href = page.buildHref(builder, build['number'])
        if href is None:
            return e(label)
        return f'<a href="{e(href)}" target="_top">{e(label)}</a>'

    def flakyRow(self, page, r):
        return [self.testLink(page, r['builder'], r['test']), e(r['builder']),
                f"{r['flip_rate'] * 100:.0f}%", f"{r['failures']} of {r['builds']}",
                e("; ".join(r['reasons'])),
                self.buildLink(page, r['builder'], r['last_failure'])]

    def failingRow(self, page, r):
        return [self.testLink(page, r['builder'], r['test']), e(r['builder']),
                f"{r['failures']} of {r['builds']}",
                self.buildLink(page, r['builder'], r['last_failure']),
                self.buildLink(page, r['builder'], r['first_failure'])]

    def newRow(self, page, r):
        note = "failed since it was first seen" if not r['passed_before'] else ""
        return [self.testLink(page, r['builder'], r['test']), e(r['builder']),
                self.buildLink(page, r['builder'], r['since']), str(r['builds']), e(note)]

    def slowRow(self, page, r):
        return [self.testLink(page, r['builder'], r['test']), e(r['builder']),
                fmtSeconds(r['median']), fmtSeconds(r['max']), fmtSeconds(r['last'])]

    def slowingRow(self, page, r):
        change = "new" if r['before'] <= 0 else f"+{r['ratio'] * 100:.0f}%"
        return [self.testLink(page, r['builder'], r['test']), e(r['builder']),
                fmtSeconds(r['before']), fmtSeconds(r['after']), e(change),
                self.buildLink(page, r['builder'], r.get('since'))]

    # -- buildbot-stats report ----------------------------------------------------------------

    def text(self, answers):
        """The flaky, failing and slowing tests (the page's tables without their links);
        the slowest tests stay on the page and in ``buildbot-stats tests --slowest``."""
        rows = [("test", "builder", "table", "builds", "detail")]
        for r in answers['flaky']:
            rows.append((shortName(r['test']), r['builder'], "flaky",
                         f"{r['failures']} of {r['builds']}",
                         f"flip rate {r['flip_rate'] * 100:.0f}%"))
        for r in answers['failing']:
            rows.append((shortName(r['test']), r['builder'], "failing",
                         f"{r['failures']} of {r['builds']}",
                         f"last #{r['last_failure']['number']}" if r['last_failure'] else ""))
        for r in answers['slowing']:
            change = "new" if r['before'] <= 0 else f"+{r['ratio'] * 100:.0f}%"
            rows.append((shortName(r['test']), r['builder'], "slower", "",
                         f"{fmtSeconds(r['before'])} -> {fmtSeconds(r['after'])} ({change})"))
        return rows if len(rows) > 1 else []


def shortName(test, width=60):
    return test if len(test) <= width else "\u2026" + test[-(width - 1):]
