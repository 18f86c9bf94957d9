"""Changes: what got slower or faster and since which build, newest first (the change points
kept in the store, docs/regressions.rst); and the events the charts draw where changes
began."""

from __future__ import annotations

from buildbot_stats.analysis import changeDetectionInstalled
from buildbot_stats.reading.changes import describeSeries
from buildbot_stats.reading.changes import fmtConfidence
from buildbot_stats.reading.changes import fmtSize
from buildbot_stats.reading.changes import fmtValue
from buildbot_stats.reading.changes import headline
from buildbot_stats.reading.changes import word
from buildbot_stats.www.html import e
from buildbot_stats.www.html import fullTime
from buildbot_stats.www.panels.base import Panel

#: Characters of a change's comment shown in the table (the whole one on hover).
COMMENT_CHARS = 80
HEADERS = ("since", "builder", "series", "change", "median before/after", "first build",
           "revision", "branch", "changes", "confidence")


def tip(record):
    """The hover text of a change: its headline and revision."""
    text = headline(record)
    if record.get('revision'):
        text += f", revision {record['revision']}"
    return text


def changesOf(q, pick):
    """The change records of a view (its :class:`~buildbot_stats.www.panels.base.Query`:
    ``changePoints`` is asked once for every chart) that are not withdrawn and for which
    ``pick(record)`` is true: what a chart's model keeps for its markers."""
    return [r for r in q.window('changePoints') if not r['withdrawn'] and pick(r)]


def events(page, records, pick=None):
    """The events (:func:`buildbot_stats.charts.lineChart`) of the change ``records`` (not
    withdrawn) for which ``pick(record)`` is true (None: all)."""
    out = []
    for record in records or ():
        if record['withdrawn'] or pick is not None and not pick(record):
            continue
        out.append((record['time'], tip(record),
                    page.buildHref(record['builder'], record['build_number']),
                    'worse' if record['worse'] else 'better'))
    return out


class ChangesPanel(Panel):
    id = 'changes'
    title = "Changes"
    captured_by = ()
    what = "Changes"

    def compute(self, q):
        """``{'changes': [change record, ...]}``, newest first (withdrawn ones included:
        the panel counts them); always true (the panel says why it has none)."""
        return {'changes': q.window('changePoints')}

    def render(self, page, model):
        records = [r for r in model['changes'] if not r['withdrawn']]
        withdrawn = len(model['changes']) - len(records)
        if not records:
            return self.nothing(page, withdrawn)
        rows = []
        for r in records:
            href = page.buildHref(r['builder'], r['build_number'])
            build = page.link(f"#{r['build_number']}", href, top=True)
            arrow = '&#9650;' if r['direction'] == 'up' else '&#9660;'
            kind = 'worse' if r['worse'] else 'better'
            rows.append([
                e(fullTime(r['time'])), e(r['builder']), e(describeSeries(r['series'])),
                f'<span class="{kind}">{arrow} {e(fmtSize(r))} {e(word(r))}</span>',
                f"{e(fmtValue(r['series'], r['before']))} &#8594; "
                f"{e(fmtValue(r['series'], r['after']))}",
                build, e(r.get('revision') or ''), e(r.get('branch') or ''),
                self.commits(r),
                e(fmtConfidence(r['confidence'])),
            ])
        table = page.table(HEADERS, rows, "changes")
        note = (f'<p class="note">{withdrawn} change{"s" if withdrawn != 1 else ""} found '
                'earlier and no longer found by a later analysis (withdrawn) not shown.</p>'
                if withdrawn else '')
        return table + note

    @staticmethod
    def commits(record):
        """The changes (commits) that came in with the first build after the change."""
        if not record.get('changes'):
            return ''
        comments = [c for c in record.get('comments') or [] if c]
        first = comments[-1].splitlines()[0] if comments else ''
        if len(first) > COMMENT_CHARS:
            first = first[:COMMENT_CHARS - 1] + '\u2026'
        who = ', '.join(record.get('authors') or [])
        count = record['changes']
        text = f"{count} by {who}" if who else str(count)
        if first:
            text += f": {first}"
        return f'<span title="{e(chr(10).join(comments))}">{e(text)}</span>'

    def nothing(self, page, withdrawn):
        """The text of the panel without a change to show: why, if detection cannot run."""
        why = page.detection
        if why is not None:
            text = f"Change detection is off: {e(why)}."
        elif not changeDetectionInstalled():
            # here, not at import, and only without Otava (then cheap): buildbot-stats
            # report imports the panels and must start without NumPy and Otava
            # (tests.test_regressions_cli.QuickStart), a view must not load SciPy to say so
            from buildbot_stats.analysis import changepoints

            text = (f"Change detection needs the {changepoints.PACKAGE} package: "
                    f"<code>{e(changepoints.INSTALL)}</code>.")
        else:
            text = "No change found in this range."
        if withdrawn:
            text += f" ({withdrawn} withdrawn.)"
        return f'<p class="none" data-panel="{self.id}">{text}</p>'

    def text(self, model):
        rows = [("since", "builder", "series", "change", "median before/after",
                 "first build", "revision", "confidence")]
        for r in model['changes']:
            if r['withdrawn']:
                continue
            rows.append((fullTime(r['time']), r['builder'], describeSeries(r['series']),
                         f"{fmtSize(r)} {word(r)}",
                         f"{fmtValue(r['series'], r['before'])} -> "
                         f"{fmtValue(r['series'], r['after'])}",
                         f"#{r['build_number']}", r.get('revision') or '',
                         fmtConfidence(r['confidence'])))
        return rows if len(rows) > 1 else []
