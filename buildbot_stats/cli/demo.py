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

from buildbot_stats.cli import interrupt
from buildbot_stats.cli import report
from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import runReactor
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
    state['builds_done_at'] = time.monotonic()  # what follows (--serve) is not build time
    return results


async def stopAll(state):
    """The StatsService first (it writes what it holds and closes the store: from then on
    the store is final, and ending the process cannot change it), then the master, the
    worker and the DB pool. A master with builds running takes a second or two to stop
    (Buildbot polls them once a second): Ctrl-C does not wait that long
    (:mod:`buildbot_stats.cli.interrupt`)."""
    from twisted.internet import defer

    from buildbot_stats.registry import statsServices

    # from here, a build that ends was cut off: neither printed nor kept
    state['stopping'] = True
    worker, master = state.pop('worker', None), state.pop('master', None)
    if master is not None and master.running:
        for _, service in statsServices(master):
            if service.running:
                await service.disownServiceParent()
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


def endChildren():
    """SIGKILL every process this one started and its process group (the worker runs
    each command in a group of its own): what a forced end would otherwise leave
    running. Linux (/proc); elsewhere nothing."""
    import signal

    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir('/proc') if p.isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            with open(f'/proc/{pid}/stat', 'rb') as f:
                ppid = int(f.read().rsplit(b')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid != me:
            continue
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def keepOnly(store, builds, timeout=10.0):
    """Remove from the demo's ``store`` the points of every build not in ``builds``
    (``(builder, number)`` pairs): those cut off by Ctrl-C or the timeout. Their number."""
    if not os.path.exists(store):
        return 0
    from buildbot_stats.storage.sqlite import retention

    keep = {(b, int(n)) for b, n in builds}
    conn = sqlite3.connect(store, timeout=timeout, isolation_level=None)
    try:
        cut = [pair for pair in retention.builds(conn) if pair not in keep]
        retention.deleteBuilds(conn, cut)
        return len(cut)
    finally:
        conn.close()


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


async def serveUntilInterrupted(reactor, state, store, www_port, out, closing):
    """Flush the stats, print the summary (read in a thread), the page's URL and
    ``closing`` (the lines that end the demo), then wait for Ctrl-C (SIGINT) or SIGTERM:
    the normal end of ``--serve``, not an interruption."""
    from twisted.internet import defer
    from twisted.internet import threads

    from buildbot_stats.registry import findStatsService

    service = findStatsService(state['master'], 'StatsService')
    await service.drain()  # the captures of the last builds, then their points written
    for backend in service.backends:
        await backend.flush(30)
    await threads.deferToThread(writeSummary, out, store)
    url = f"http://127.0.0.1:{www_port}/#/stats"
    stopped = defer.Deferred()
    guard = interrupt.current
    if guard is not None:
        guard.expected = True  # the stop that follows is the normal end: status 0
        guard.onSignal = lambda signum: reactor.callFromThread(
            lambda: stopped.called or stopped.callback(None))
    out.write(closing)
    out.write(f"Statistics page: {url}\n"
              "The master is up with its web UI; press Ctrl-C to stop it.\n")
    out.flush()
    await stopped
    out.write("Stopping the master and the worker.\n")
    out.flush()


def commandName():
    """How to call buildbot-stats again: its path when it is not on PATH (a venv)."""
    script = os.path.join(os.path.dirname(sys.executable), 'buildbot-stats')
    if shutil.which('buildbot-stats') == script or not os.path.exists(script):
        return 'buildbot-stats'
    return os.path.relpath(script)


def closingLines(store, basedir):
    """Where everything is, and what to try next: the demo's last lines."""
    cmd = commandName()
    return (f"\nStore:       {store}\n"
            f"HTML report: {report.defaultHtmlPath(store)} (open it in a browser)\n"
            f"master.cfg:  {os.path.join(basedir, 'master.cfg')} (an example to copy)\n"
            f"Try:         {cmd} report {os.path.relpath(store)}\n"
            f"             {cmd} export {os.path.relpath(store)} --format line\n")


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
            # the builds' time, not the serving's
            failed = sum(1 for r in results if r[3] != 0)
            out.write(f"\n{plural(len(results), 'build')} in "
                      f"{state['builds_done_at'] - t0:.1f} s ({failed} failed).\n")
            out.flush()
            if args.serve:
                await serveUntilInterrupted(reactor, state, store, www_port, out,
                                            closingLines(store, basedir))
            return results
        finally:
            await stopAll(state)
            reactor.removeSystemEventTrigger(trigger)

    def stoppedNote(timeout):
        """Remove the builds cut off on the way out from the store (they are not
        results); the line that says so."""
        done = [(b, n) for b, n, _, _ in list(state['results'])]
        try:
            cut = keepOnly(store, done, timeout=timeout)
            note = f"; {plural(cut, 'build')} cut off on the way out not kept" if cut else ""
        except sqlite3.Error as e:
            note = f"; the builds cut off on the way out could not be removed ({e})"
        return (f"\n\nStopped after {plural(len(done), 'build')}. The store keeps the builds "
                f"above{note}: {store}\n")

    def endNow():
        # the process is being ended (cli.interrupt): no worker command left running, the
        # store keeps the builds shown; nothing here may wait for the main thread
        endChildren()
        if 'builds_done_at' not in state:
            os.write(1, stoppedNote(timeout=0.2).encode())

    try:
        with interrupt.onForcedExit(endNow):
            results = runReactor(main)
    except (KeyboardInterrupt, CliError):
        if 'builds_done_at' not in state:
            out.write(stoppedNote(timeout=10.0))
            out.flush()
        raise
    finally:
        log.msg("buildbot-stats demo: stopped")
        logfile.close()
    out.write("Master and worker stopped.\n")
    if not args.serve:
        out.write("\n")
        writeSummary(out, store)
        out.write(closingLines(store, basedir))
    failed = sum(1 for r in results if r[3] != 0)
    if failed:
        raise CliError(f"{plural(failed, 'build')} failed; see {basedir}/twistd.log")
    return 0
