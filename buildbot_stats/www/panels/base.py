"""What every panel of the Statistics page is, and the questions a view asks its reader.

A panel computes its numbers from a reader (:meth:`Panel.compute`, through a :class:`Query`
that asks each question once) into a plain model, then renders that model as a section of
the page (:meth:`Panel.render`) or as lines of ``buildbot-stats report`` (:meth:`Panel.text`):
the page and the report show the same numbers.

How much a chart draws: each build as a dot (with its hover text and link) only when a
chart has at most :data:`MAX_BUILD_MARKS` builds and the raw points of the range are kept;
otherwise the median and 90th percentile per period, the period chosen so that a line has
at most :data:`MAX_PERIODS` marks (a chart's plot is 680 pixels wide).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

from buildbot_stats import charts

#: Builds a chart draws one by one at most (dots of 6 pixels on 680).
MAX_BUILD_MARKS = 200
#: Marks per line at most.
MAX_PERIODS = charts.PLOT_WIDTH // 3
#: The periods of the per-period lines, fine to coarse.
PERIODS = (3600, 86400, 7 * 86400, 28 * 86400)
PERIOD_WORDS = {3600: "hour", 86400: "day", 7 * 86400: "week", 28 * 86400: "4 weeks"}


def periodFor(span):
    """The finest period that draws a span (seconds) in at most :data:`MAX_PERIODS` marks."""
    for p in PERIODS:
        if span / p <= MAX_PERIODS:
            return p
    n = -(-span // (PERIODS[-1] * MAX_PERIODS))
    return int(PERIODS[-1] * n)


def periodWord(period):
    return PERIOD_WORDS.get(period, f"{period // 86400} days")


class Query:
    """One view's questions to a reader (SQLite store or InfluxDB), each asked once.

    :param reader: a :class:`~buildbot_stats.reading.sqlite.StoreReader` or
        :class:`~buildbot_stats.reading.influxdb.InfluxReader`
    :param builder: one builder's view (None: all)
    :param start: the range's start (seconds; None: everything)
    :param end: its end (None: up to now and after)
    :param now: the time of the view
    """

    def __init__(self, reader, builder, start, end, now=None):
        self.reader, self.builder, self.start, self.end = reader, builder, start, end
        self.now = time.time() if now is None else now
        self._answers = {}
        self._lock = threading.Lock()
        first = start if start is not None else self.ask('firstTime')
        last = end if end is not None else self.now
        self.span = max(0.0, last - first) if first is not None else 0.0
        self.period = periodFor(max(self.span, 1.0))
        raw_since = self.ask('rawSince')
        # each build can be drawn: its raw point is kept for the whole range
        self.builds_kept = not raw_since or (start is not None and start >= raw_since)

    def ask(self, method, *args, **kwargs):
        """``reader.method(*args, **kwargs)``, once per view (also when panels computed at
        once by several threads ask it together: the first asks, the others wait for its
        answer)."""
        key = (method, args, tuple(sorted(kwargs.items())))
        with self._lock:
            future = self._answers.get(key)
            mine = future is None
            if mine:
                future = self._answers[key] = concurrent.futures.Future()
        if mine:
            try:
                future.set_result(getattr(self.reader, method)(*args, **kwargs))
            except BaseException as e:
                future.set_exception(e)
        return future.result()

    def window(self, method, **kwargs):
        """A reader query of this view's builder and range."""
        return self.ask(method, self.builder, self.start, self.end, **kwargs)

    def summary(self, kind, per_period=False, by_builder=True):
        """The reader's ``summarize`` of ``kind`` over the range, or per :attr:`period`;
        ``by_builder=False``: all builders together."""
        return self.ask('summarize', kind, self.builder, self.start, self.end,
                        period=self.period if per_period else None, by_builder=by_builder)

    def drawBuilds(self, count):
        """True when a chart of ``count`` builds draws each build."""
        return self.builds_kept and 0 < count <= MAX_BUILD_MARKS


class Panel:
    #: the section's id (``<section id=...>``, also ``data-panel`` of its "missing" text)
    id = None
    #: the section's heading
    title = None
    #: the capture classes (names, base classes count) that feed the panel
    captured_by = ()
    #: the master.cfg code that adds such a capture, for the "not captured" text
    add_line = None
    #: the words of its "missing" text (``"Build durations"``)
    what = None

    def compute(self, query):
        """The panel's model (plain data) from the :class:`Query` of a view; a false model
        (None, empty) when there is nothing to show."""
        raise NotImplementedError

    def render(self, page, model):
        """The section's HTML (without the heading) from a true model."""
        raise NotImplementedError

    def text(self, model):
        """The lines of ``buildbot-stats report``'s summary from a true model."""
        return []
