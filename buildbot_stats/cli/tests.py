"""``buildbot-stats tests STORE``: the flaky, failing and slow tests of a store's per-test
history (CaptureTestHistory), as text or JSON; ``--history TEST`` for one test."""

from __future__ import annotations

import json

from buildbot_stats.analysis.tests import slowdownWords
from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import addTimeRange
from buildbot_stats.cli.common import isoTime
from buildbot_stats.cli.common import openStoreOrFail
from buildbot_stats.cli.common import plural
from buildbot_stats.cli.common import printable
from buildbot_stats.cli.common import timeRange
from buildbot_stats.reading.summary import fmtShortSeconds
from buildbot_stats.reading.tests import TABLE_ROWS

FORMATS = ('text', 'json')
#: ``--option``: (the table of ``testAnswers``, its heading)
TABLES = {
    'flaky': ('flaky', "Flaky tests"),
    'failing': ('failing', "Tests failing most"),
    'new_failures': ('new_failures', "Tests failing now"),
    'slowest': ('slowest', "Slowest tests"),
    'slowing': ('slowing', "Tests getting slower"),
}


def addParser(sub):
    p = sub.add_parser(
        'tests', help="flaky, failing and slow tests of the per-test history",
        description="Print the flaky tests (failed and passed on the same revision or "
        "buildset, flipped between failed and passed, or passed only on a rerun), the tests "
        "failing most, the tests failing now, the slowest tests and the tests getting slower, "
        "from the per-test history CaptureTestHistory keeps in the store. With --history, one "
        "test's result in every build.")
    p.add_argument('store', metavar='STORE', help="the SQLite store (e.g. master/stats.sqlite)")
    which = p.add_mutually_exclusive_group()
    which.add_argument('--flaky', dest='table', action='store_const', const='flaky',
                       help="only the flaky tests")
    which.add_argument('--failing', dest='table', action='store_const', const='failing',
                       help="only the tests failing most")
    which.add_argument('--new-failures', dest='table', action='store_const',
                       const='new_failures', help="only the tests failing now")
    which.add_argument('--slowest', dest='table', action='store_const', const='slowest',
                       help="only the slowest tests")
    which.add_argument('--slowing', dest='table', action='store_const', const='slowing',
                       help="only the tests getting slower")
    which.add_argument('--history', metavar='TEST',
                       help="one test's result in every build of --builder")
    p.add_argument('--builder', '-b', metavar='NAME', help="one builder (default: all)")
    addTimeRange(p, "only builds that ended at or after TIME (default: the first build)",
                 "only builds that ended before TIME (default: now)")
    p.add_argument('--limit', '-n', type=int, default=TABLE_ROWS, metavar='N',
                   help=f"rows per table (default {TABLE_ROWS})")
    p.add_argument('--format', '-f', choices=FORMATS, default='text',
                   help="text (tables) or json (default: text)")
    p.set_defaults(func=run, table=None)
    return p


def run(args, out):
    if args.limit < 1:
        raise CliError(f"--limit must be at least 1, got {args.limit}")
    if args.history is not None and not args.builder:
        raise CliError("--history needs --builder: a test's history is of one builder")
    start, end = timeRange(args)
    with openStoreOrFail(args.store) as store:
        if args.history is not None:
            history = store.testHistory(args.builder, args.history, start, end)
            if args.format == 'json':
                out.write(json.dumps({'builder': args.builder, 'test': args.history,
                                      'history': history}, indent=1) + "\n")
            else:
                out.write(historyText(args.builder, args.history, history))
            return 0
        answers = store.testAnswers(args.builder, start, end, limit=args.limit)
    tables = [args.table] if args.table else list(TABLES)
    if args.format == 'json':
        doc = {'builds': answers['builds'], 'builders': answers['builders']}
        doc.update({t: answers[TABLES[t][0]] for t in tables})
        if 'slowing' in tables:
            doc['slowing_method'] = answers['slowing_method']
        out.write(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    else:
        out.write(answersText(answers, tables))
    return 0


# -- text ------------------------------------------------------------------------------------

def build(b):
    return f"#{b['number']} {isoTime(b['time'], 'seconds')}" if b else ""


def columns(rows):
    """Rows of cells as aligned lines, a rule under the first."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


ROWS = {
    'flaky': (("test", "builder", "flip rate", "failed", "why", "last failure"),
              lambda r: (r['test'], r['builder'], f"{r['flip_rate'] * 100:.0f}%",
                         f"{r['failures']}/{r['builds']}", "; ".join(r['reasons']),
                         build(r['last_failure']))),
    'failing': (("test", "builder", "failed", "last failure", "first failure"),
                lambda r: (r['test'], r['builder'], f"{r['failures']}/{r['builds']}",
                           build(r['last_failure']), build(r['first_failure']))),
    'new_failures': (("test", "builder", "failing since", "builds"),
                     lambda r: (r['test'], r['builder'], build(r['since']), str(r['builds']))),
    'slowest': (("test", "builder", "median", "max", "last"),
                lambda r: (r['test'], r['builder'], fmtShortSeconds(r['median']),
                           fmtShortSeconds(r['max']), fmtShortSeconds(r['last']))),
    'slowing': (("test", "builder", "before", "after", "change", "since"),
                lambda r: (r['test'], r['builder'], fmtShortSeconds(r['before']),
                           fmtShortSeconds(r['after']),
                           "new" if r['before'] <= 0 else f"+{r['ratio'] * 100:.0f}%",
                           build(r['since']))),
}


def answersText(answers, tables):
    if not answers['builds']:
        return ("No per-test results in this store (in this range): add "
                "stats.CaptureTestHistory() to a backend's captures.\n")
    lines = [f"{plural(answers['builds'], 'build')} with test results "
             f"({', '.join(printable(b) for b in answers['builders'])})."]
    for t in tables:
        key, heading = TABLES[t]
        rows = answers[key]
        lines.append("")
        lines.append(f"{heading}: {len(rows) or 'none'}")
        if rows:
            headers, cells = ROWS[t]
            lines.extend(columns([headers] + [tuple(printable(c) for c in cells(r))
                                              for r in rows]))
        if t == 'slowing':
            sentence, install = slowdownWords(answers['slowing_method'])
            lines.append(sentence + (f" {install}" if install else ""))
    return "\n".join(lines) + "\n"


def historyText(builder, test, history):
    if not history:
        return f"No result of {printable(test)} on {printable(builder)} in this store.\n"
    rows = [("build", "end", "outcome", "duration", "revision")]
    for h in history:
        rows.append((f"#{h['number']}", isoTime(h['time'], 'seconds'),
                     h['outcome'] or "-",
                     "" if h['duration'] is None else fmtShortSeconds(h['duration']),
                     printable(h['revision'] or "")))
    return "\n".join([f"{printable(test)} on {printable(builder)}:"] + columns(rows)) + "\n"
