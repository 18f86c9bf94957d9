"""``buildbot-stats backfill MASTER_DIR``: rebuild the statistics of past builds from the
master's own database (docs/history.rst)."""

from __future__ import annotations

import gc
import sys
import time

from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import addTimeRange
from buildbot_stats.cli.common import runReactor
from buildbot_stats.cli.common import timeRange


#: the backfill ran to its end but a backend dropped points (see docs/cli.rst)
EXIT_POINTS_DROPPED = 3


def addParser(sub):
    p = sub.add_parser(
        'backfill', help="rebuild the statistics of past builds from the master's database",
        description="Replay the finished builds in MASTER_DIR's Buildbot database through the "
        "captures and storage backends of the StatsService its master.cfg configures. The "
        "points are the ones the live service writes for the same builds, so a second run, "
        "or a run over a period already captured, adds nothing. The master may be running "
        "or stopped; its database is only read.")
    p.add_argument('master_dir', metavar='MASTER_DIR', help="the master's base directory")
    addTimeRange(p, "only builds that finished at or after TIME (default: the first build)",
                 "only builds that finished before TIME (default: now)")
    p.add_argument('--builder', metavar='NAME', action='append', dest='builders',
                   help="only this builder's builds; repeat for several (default: all)")
    p.add_argument('--dry-run', action='store_true',
                   help="count the points per series and write nothing")
    p.set_defaults(func=run)
    return p


class TqdmProgress:
    """A tqdm bar on stderr: builds done, builds/s, ETA."""

    def __init__(self, total):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit='build', file=sys.stderr, dynamic_ncols=True,
                        desc='backfill')
        self.done = 0

    def __call__(self, done):
        self.bar.update(done - self.done)
        self.done = done

    def close(self):
        self.bar.close()


def formatSummary(result, seconds, sink, dry_run):
    lines = []
    rate = result.builds / seconds if seconds > 0 else 0.0
    lines.append(f"{result.builds} builds read in {seconds:.1f} s ({rate:.0f} builds/s); "
                 f"{result.builds_without_data} had no yieldMetricsValue record "
                 f"(values replayed: {result.data_values})")
    if result.capture_errors:
        lines.append(f"{result.capture_errors} capture errors (the first ones below; the "
                     "master's twistd.log shows the same errors for its live builds)")
    if result.bad_data:
        lines.append(f"{result.bad_data} yieldMetricsValue records (build data) could not be "
                     "decoded and were skipped")
    if dry_run:
        lines.append(f"dry run: {sum(sink.series.values())} points would be written, nothing "
                     "was")
        for backend, n in sorted(sink.by_backend.items()):
            lines.append(f"  backend {backend!r}: {n} points")
        lines.append("points per series:")
        for series, n in sorted(sink.series.items()):
            lines.append(f"  {series}: {n}")
        return '\n'.join(lines) + '\n'
    for name, c in sorted(result.backends.items()):
        lines.append(f"  backend {name!r}: {c.get('added', 0)} points, "
                     f"{c.get('written', 0)} written, {c.get('rejected', 0)} rejected, "
                     f"{c.get('dropped', 0)} dropped")
    if getattr(result, 'changes', None) is not None:
        found, withdrawn = result.changes
        lines.append(f"change detection: {found} new change points kept"
                     + (f", {withdrawn} withdrawn" if withdrawn else "")
                     + " (buildbot-stats regressions lists them)")
    return '\n'.join(lines) + '\n'


class LogKeeper:
    """The twisted log of the run: not printed (Buildbot logs the config's traceback, the
    database URL...), but the first lines of buildbot_stats errors are kept for the
    summary, and a database that makes Buildbot wait (locked by another program, a server
    gone) is said at once, on standard error, once per :data:`WAIT_NOTICE_EVERY` seconds."""

    MAX = 5
    WAIT_NOTICE_EVERY = 30.0
    #: what Buildbot's database pool logs when it retries a query ("retrying ... after sql
    #: error ..."), and why
    WAITS = (('database is locked', "locked by another program"),
             ('Lost connection', "the connection to it was lost"))

    def __init__(self, err=None, clock=time.monotonic):
        self.errors = []
        #: how the notice names the database (openMaster tells it)
        self.database = "(c['db'])"
        self.err = sys.stderr if err is None else err
        self.clock = clock
        self.noticed = None

    def __call__(self, event):
        from twisted.logger import formatEvent

        text = formatEvent(event) or ''
        failure = event.get('log_failure')
        if failure is not None:
            text = f"{text} {failure.getErrorMessage()}"
        self.noticeWait(text)
        if len(self.errors) >= self.MAX:
            return
        if 'buildbot_stats' in text and ('error' in text or failure is not None):
            self.errors.append(' '.join(text.split()))

    def noticeWait(self, text):
        if 'after sql error' not in text:
            return  # Buildbot's database pool retrying, not a backend's own error
        for marker, why in self.WAITS:
            if marker in text:
                self.waiting(why)
                return

    def waiting(self, why):
        """Say, on standard error, that the database makes the command wait (at most once
        per :data:`WAIT_NOTICE_EVERY` seconds)."""
        now = self.clock()
        if self.noticed is not None and now - self.noticed < self.WAIT_NOTICE_EVERY:
            return
        self.noticed = now
        print(f"buildbot-stats backfill: waiting for the master's database "
              f"{self.database}: {why}; Buildbot retries until it answers (Ctrl-C to stop)",
              file=self.err, flush=True)


def run(args, out):
    from twisted.logger import globalLogBeginner
    from twisted.logger import globalLogPublisher

    since, until = timeRange(args)
    keeper = LogKeeper()
    if getattr(globalLogBeginner, '_temporaryObserver', True) is not None:
        # from here, nothing of the log is printed (a config's traceback quotes its lines)
        globalLogBeginner.beginLoggingTo([keeper], redirectStandardIO=False,
                                         discardBuffer=True)
    else:
        # logging has begun (a test runner calling main()): the keeper beside it
        globalLogPublisher.addObserver(keeper)
    try:
        return runBackfill(args, out, since, until, keeper)
    finally:
        globalLogPublisher.removeObserver(keeper)


def runBackfill(args, out, since, until, keeper):
    from buildbot_stats.history.backfill import BackfillError
    from buildbot_stats.history.backfill import backfill
    from buildbot_stats.history.backfill import loadMaster
    from buildbot_stats.history.backfill import openMaster

    try:
        # master.cfg and its StatsService: mistakes said before a reactor starts
        loaded = loadMaster(args.master_dir)
    except BackfillError as e:
        raise CliError(str(e)) from None

    async def main(reactor):
        master, svc = await openMaster(args.master_dir, reactor, notices=keeper,
                                       loaded=loaded)
        # what is loaded now (Buildbot, SQLAlchemy, master.cfg) lives until the end: out of
        # the collector's sight, full collections no longer pause the replay for 100+ ms
        # (and it runs about a third faster, benchmarks/backfill.py)
        gc.freeze()
        try:
            return await backfill(master, svc, since=since, until=until,
                                  builders=args.builders, dry_run=args.dry_run,
                                  progress_factory=TqdmProgress)
        finally:
            await master.close()

    try:
        result, seconds, sink = runReactor(main)
    except BackfillError as e:
        raise CliError(str(e)) from None
    out.write(formatSummary(result, seconds, sink, args.dry_run))
    if keeper.errors:
        out.write(f"errors logged during the run (the first {LogKeeper.MAX}; a backend's "
                  "retries may have recovered, as its counters above say):\n")
        for line in keeper.errors:
            out.write(f"  {line}\n")
    lost = sum(c.get('dropped', 0) for c in result.backends.values())
    if lost:
        print(f"buildbot-stats backfill: {lost} points were dropped (a backend could not "
              "write them in time); run it again once the backend is back", file=sys.stderr)
        return EXIT_POINTS_DROPPED
    return 0
