"""``buildbot-stats demo``: a real master and a real worker run builds into the embedded store.

Both run in this one process, on one reactor: the worker connects to the master over PB on
a free loopback port, exactly as a remote worker would. Stopping stops both, so nothing is
left running when the command returns (the worker's shell commands are its children and
end with their steps).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import sys
import time

from buildbot_stats.cli import report
from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import plural
from buildbot_stats.cli.demo_master_cfg import MASTER_CFG
from buildbot_stats.cli.demo_master_cfg import SERVE_CFG
from buildbot_stats.cli.safewrite import writeText

DEFAULT_BUILDS = 30
DEFAULT_DIR = 'buildbot-stats-demo'
BUILDERS = ('compile', 'test', 'docs')
MARKER = '.buildbot-stats-demo'


def addParser(sub):
    p = sub.add_parser(
        'demo', help="run a master and a worker, build a sample project, report the stats",
        description="Create a Buildbot master and a real worker in DIR (one process), run "
        "builds of a small sample project on three builders, keep the statistics in "
        "DIR/master/stats.sqlite, print a summary and write DIR/master/stats-report.html. "
        "DIR/master/master.cfg is an example configuration to copy.")
    p.add_argument('--dir', default=DEFAULT_DIR, metavar='DIR',
                   help=f"where to create the master and the worker (default: ./{DEFAULT_DIR}); "
                   "a previous demo there is replaced")
    p.add_argument('--builds', type=positiveInt, default=DEFAULT_BUILDS, metavar='N',
                   help=f"number of builds, spread over the builders (default: {DEFAULT_BUILDS})")
    p.add_argument('--timeout', type=positiveInt, default=600, metavar='SECONDS',
                   help="give up when the builds take longer than this (default: 600)")
    p.add_argument('--serve', action='store_true',
                   help="after the builds, keep the master up with Buildbot's web UI and its "
                   "Statistics page on a loopback port until Ctrl-C (needs "
                   "pip install 'buildbot_stats[www]')")
    p.add_argument('--no-progress', action='store_true',
                   help="one line per build instead of a progress bar (the default when the "
                   "output is not a terminal)")
    p.set_defaults(func=run)
    return p


def positiveInt(text):
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


# -- the directory ---------------------------------------------------------------------------

def prepareDir(path):
    """DIR/master and DIR/worker, fresh; refuse a non-empty DIR that is not a demo."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise CliError(f"--dir {path}: is a file")
    if os.path.isdir(path) and os.listdir(path) and not os.path.exists(
            os.path.join(path, MARKER)):
        raise CliError(f"--dir {path}: exists and is not a previous demo; choose another "
                       "--dir or empty it")
    try:
        for sub in ('master', 'worker'):
            shutil.rmtree(os.path.join(path, sub), ignore_errors=True)
        os.makedirs(os.path.join(path, 'master'))
        os.makedirs(os.path.join(path, 'worker'))
    except OSError as e:
        raise CliError(f"--dir {path}: cannot create it: {e.strerror}") from None
    writeText(os.path.join(path, MARKER),
              "made by buildbot-stats demo; the directory is replaced by the next demo\n")
    return path


def freePort():
    # the master binds it a moment later; on a loopback-only test box nothing else races us
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# -- progress --------------------------------------------------------------------------------

class Progress:
    def __init__(self, total, out, bar):
        self.total, self.out, self.bar = total, out, bar
        self.done = 0
        self.started = time.monotonic()

    def build(self, builder, number, seconds, ok):
        self.done += 1
        status = "ok" if ok else "FAILED"
        if self.bar:
            width = 30
            filled = int(width * self.done / self.total)
            self.out.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {self.done}/"
                           f"{self.total} builds  {builder} #{number} {seconds:.1f}s {status}"
                           "      ")
            if self.done == self.total:
                self.out.write("\n")
        else:
            self.out.write(f"  build {self.done}/{self.total}: {builder} #{number} "
                           f"{seconds:.1f}s {status}\n")
        self.out.flush()


# -- the run ---------------------------------------------------------------------------------

async def upgradeDb(basedir):
    from buildbot.config.master import FileLoader
    from buildbot.scripts.upgrade_master import upgradeDatabase

    master_cfg = FileLoader(basedir, 'master.cfg').loadConfig()
    await upgradeDatabase({'basedir': basedir, 'quiet': True}, master_cfg)


async def runBuilds(reactor, basedir, workerdir, port, total, progress, timeout, state):
    from twisted.internet import defer

    from buildbot.master import BuildMaster
    from buildbot.process.results import SUCCESS
    from buildbot_worker.bot import Worker

    await upgradeDb(basedir)
    master = BuildMaster(basedir, reactor=reactor)
    state['master'] = master
    await master.startService()
    worker = Worker('127.0.0.1', port, 'demo-worker', 'demo-password', workerdir,
                    keepalive=600, protocol='pb')
    state['worker'] = worker
    await defer.maybeDeferred(worker.startService)

    plan = {b: total // len(BUILDERS) + (1 if i < total % len(BUILDERS) else 0)
            for i, b in enumerate(BUILDERS)}
    all_done = defer.Deferred()
    names = {}
    results = state['results']

    def force(builder):
        plan[builder] -= 1
        d = master.data.control('force', {'builderNames': [builder]},
                                ('forceschedulers', 'force'))
        d.addErrback(lambda f: all_done.called or all_done.errback(f))

    async def finished(key, build):
        if state.get('stopping'):
            return  # cut off by Ctrl-C or the timeout: not a result (and not kept)
        builder = names.get(build['builderid'])
        if builder is None:
            b = await master.data.get(('builders', build['builderid']))
            builder = names[build['builderid']] = b['name']
        if state.get('stopping'):  # the stop began while we looked the builder up
            return
        seconds = (build['complete_at'] - build['started_at']).total_seconds()
        results.append((builder, build['number'], seconds, build['results']))
        progress.build(builder, build['number'], seconds, build['results'] == SUCCESS)
        if plan[builder] > 0:
            force(builder)
        if len(results) == total and not all_done.called:
            all_done.callback(None)

    # stopped by stopAll once the master has stopped: the builds cut off on the way are
    # seen as such
    state['consumer'] = await master.mq.startConsuming(
        lambda k, m: defer.ensureDeferred(finished(k, m)), ('builds', None, 'finished'))
    # one build at a time per builder; the builders run side by side
    for builder in BUILDERS:
        if plan[builder] > 0:
            force(builder)
    timer = reactor.callLater(
        timeout, lambda: all_done.called or all_done.errback(
            CliError(f"the builds did not finish within --timeout {timeout}s "
                     f"({len(results)} of {total} done); see {basedir}/twistd.log")))
    try:
        await all_done
    finally:
        if timer.active():
            timer.cancel()
    return results


async def stopAll(state):
    """Worker, then master (its StatsService writes the queued points), then the DB pool."""
    from twisted.internet import defer

    # from here, a build that ends was cut off: neither printed nor kept
    state['stopping'] = True
    worker, master = state.pop('worker', None), state.pop('master', None)
    if worker is not None and worker.running:
        await defer.maybeDeferred(worker.stopService)
    if master is not None:
        if master.running:
            await master.stopService()
        if master.db.pool is not None:
            await master.db.pool.stop()
    consumer = state.pop('consumer', None)
    if consumer is not None:
        consumer.stopConsuming()


def keepOnly(store, builds):
    """Remove from the demo's ``store`` the points of every build not in ``builds``
    (``(builder, number)`` pairs): those cut off by Ctrl-C or the timeout. Their number."""
    if not os.path.exists(store):
        return 0
    from buildbot_stats.storage.sqlite import retention

    keep = {(b, int(n)) for b, n in builds}
    conn = sqlite3.connect(store, timeout=10, isolation_level=None)
    try:
        cut = [pair for pair in retention.builds(conn) if pair not in keep]
        retention.deleteBuilds(conn, cut)
        return len(cut)
    finally:
        conn.close()


def runReactor(main):
    """Run ``main(reactor)`` to completion on the global reactor; return or raise its result.
    Ctrl-C stops the master and the worker before the reactor stops."""
    from twisted.internet import defer
    from twisted.internet import reactor

    outcome = {}

    def go():
        d = defer.ensureDeferred(main(reactor))
        d.addBoth(lambda r: outcome.setdefault('result', r))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    result = outcome.get('result')
    if result is None and 'result' not in outcome:
        raise KeyboardInterrupt
    from twisted.python.failure import Failure

    if isinstance(result, Failure):
        result.raiseException()
    return result


def masterCfg(port, www_port=None):
    """The demo's master.cfg; with ``www_port``, the web UI and the Statistics page too."""
    text = MASTER_CFG.replace('@PORT@', str(port))
    if www_port is not None:
        marker = "# append: a master.cfg that has reporters"
        head, services = text.split(marker, 1)
        text = (head + SERVE_CFG.replace('@WWWPORT@', str(www_port)).lstrip('\n') + '\n'
                + marker + services)
    return text


def checkServe():
    try:
        import buildbot_wsgi_dashboards  # noqa: F401
        import flask  # noqa: F401

        import buildbot_www  # noqa: F401
    except ImportError as e:
        raise CliError(f"--serve needs the web UI: {e}; pip install 'buildbot_stats[www]'") \
            from None


def writeSummary(out, store):
    """The terminal summary and the HTML report of ``store``; the report's path."""
    with report.openStoreOrFail(store) as reader:
        data = report.collect(reader)
    out.write(report.terminalSummary(data))
    html = report.defaultHtmlPath(store)
    report.writeHtml(data, html, store, option='')
    return html


async def serveUntilInterrupted(reactor, state, store, www_port, out):
    """Flush the stats, print the summary (read in a thread) and the page's URL, then wait
    for Ctrl-C (SIGINT) or SIGTERM."""
    import signal

    from twisted.internet import defer
    from twisted.internet import threads

    from buildbot_stats.registry import findStatsService

    service = findStatsService(state['master'], 'StatsService')
    await service.drain()  # the captures of the last builds, then their points written
    for backend in service.backends:
        await backend.flush(30)
    html = await threads.deferToThread(writeSummary, out, store)
    url = f"http://127.0.0.1:{www_port}/#/stats"
    stopped = defer.Deferred()

    def stop(signum, frame):
        reactor.callFromThread(lambda: stopped.called or stopped.callback(None))

    # replaces the reactor's handlers: Ctrl-C is the normal end of --serve, not an error
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    out.write(f"\nHTML report: {html}\n"
              f"Statistics page: {url}\n"
              "The master is up with its web UI; press Ctrl-C to stop it.\n")
    out.flush()
    try:
        await stopped
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.write("Stopping the master and the worker.\n")


def commandName():
    """How to call buildbot-stats again: its path when it is not on PATH (a venv)."""
    script = os.path.join(os.path.dirname(sys.executable), 'buildbot-stats')
    if shutil.which('buildbot-stats') == script or not os.path.exists(script):
        return 'buildbot-stats'
    return os.path.relpath(script)


def run(args, out):
    from twisted.python import log

    bar = out.isatty() and not args.no_progress
    workdir = prepareDir(args.dir)
    basedir = os.path.join(workdir, 'master')
    workerdir = os.path.join(workdir, 'worker')
    if args.serve:
        checkServe()
    port = freePort()
    www_port = freePort() if args.serve else None
    writeText(os.path.join(basedir, 'master.cfg'), masterCfg(port, www_port))
    logfile = open(os.path.join(basedir, 'twistd.log'), 'a')
    log.startLogging(logfile, setStdout=False)

    out.write(f"buildbot_stats demo in {workdir}\n"
              f"  master: {basedir} (master.cfg, state.sqlite, stats.sqlite, twistd.log)\n"
              f"  worker: {workerdir}, connected over PB to 127.0.0.1:{port}\n"
              f"  running {args.builds} builds on {', '.join(BUILDERS)}\n")
    out.flush()
    progress = Progress(args.builds, out, bar)
    store = os.path.join(basedir, 'stats.sqlite')
    state = {'results': []}
    t0 = time.monotonic()

    async def main(reactor):
        from twisted.internet import defer

        # Ctrl-C: stop master and worker cleanly before the reactor goes
        trigger = reactor.addSystemEventTrigger(
            'before', 'shutdown', lambda: defer.ensureDeferred(stopAll(state)))
        try:
            results = await runBuilds(reactor, basedir, workerdir, port, args.builds, progress,
                                      args.timeout, state)
            if args.serve:
                await serveUntilInterrupted(reactor, state, store, www_port, out)
            return results
        finally:
            await stopAll(state)
            reactor.removeSystemEventTrigger(trigger)

    try:
        results = runReactor(main)
    except (KeyboardInterrupt, CliError):
        # the builds cut off on the way out are not results: keep the store to those shown
        done = [(b, n) for b, n, _, _ in state['results']]
        try:
            cut = keepOnly(store, done)
            note = f"; {plural(cut, 'build')} cut off on the way out not kept" if cut else ""
        except sqlite3.Error as e:
            note = f"; the builds cut off on the way out could not be removed ({e})"
        out.write(f"\n\nStopped after {plural(len(done), 'build')}; master and worker "
                  f"stopped. The store keeps the builds above{note}: {store}\n")
        out.flush()
        raise
    finally:
        log.msg("buildbot-stats demo: stopped")
        logfile.close()
    elapsed = time.monotonic() - t0
    failed = sum(1 for r in results if r[3] != 0)

    out.write(f"\n{plural(len(results), 'build')} in {elapsed:.1f}s ({failed} failed); "
              "master and worker stopped.\n\n")
    if args.serve:
        html = report.defaultHtmlPath(store)  # written while the master served
    else:
        html = writeSummary(out, store)
    cmd = commandName()
    out.write(f"\nStore:       {store}\n"
              f"HTML report: {html}\n"
              f"Try:         {cmd} report {os.path.relpath(store)}\n"
              f"             {cmd} export {os.path.relpath(store)} --format line\n")
    if failed:
        raise CliError(f"{plural(failed, 'build')} failed; see {basedir}/twistd.log")
    return 0

