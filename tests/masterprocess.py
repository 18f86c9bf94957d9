"""A real Buildbot master in a process of its own, for the tests that must kill it, restart
it, reconfigure it or run several of them: the history tests (backfill, catch-up after a
SIGKILL) and the multi-master tests.

- :class:`ChildProcess`: one long-running child in a session of its own (so that a signal
  reaches its whole process group), with a log file; also the base of the crossbar router
  and the worker of :mod:`tests.multimaster`.
- :class:`MasterProcess`: ``twistd`` in the foreground running the master's ``buildbot.tac``
  through ``tests/master_run.py`` (which can shorten Buildbot's master liveness), with its
  ``master.cfg`` written by the test, its schema made by ``buildbot upgrade-master``, and its
  database readable from the test (read-only).

The helpers are blocking (subprocess, sqlite3, psycopg2): they are the test's own, never
code under test; the test calls them between events.
"""

from __future__ import annotations

import atexit
import os
import signal
import sqlite3
import subprocess
import sys

from tests.servers import ServerError
from tests.servers import read_log
from tests.waiting import pollUntil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV_BIN = os.path.dirname(sys.executable)
# a master on a loaded 2-core machine takes 5-15 s to start (imports, schema checks) and
# its stop may flush a backend for up to its stop_timeout
START_TIMEOUT = 120
STOP_TIMEOUT = 120

_running: set = set()


@atexit.register
def _kill_leftovers():
    for proc in list(_running):
        proc.kill()


class ChildProcess:
    """One long-running child process in its own session, with a log file."""

    name = 'process'

    def __init__(self, basedir):
        self.basedir = basedir
        self.log_path = os.path.join(basedir, f'{self.name}.log')
        self.process = None

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def _spawn(self, command, env=None, cwd=None, stdout_path=None):
        with open(stdout_path or self.log_path, 'ab') as out:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=cwd or self.basedir, env=env, start_new_session=True)
        _running.add(self)

    def sendSignal(self, signum):
        if self.running:
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, signum=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """``signum`` to the whole process group and wait; SIGKILL after ``timeout``."""
        if self.process is None:
            return
        proc = self.process
        if proc.poll() is None:
            self.sendSignal(signum)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.sendSignal(signal.SIGKILL)
                proc.wait()
        # children that outlived the leader (crossbar's router worker)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process = None
        _running.discard(self)

    def kill(self):
        """SIGKILL, as a crash: nothing is flushed, nothing is said goodbye."""
        self.stop(signal.SIGKILL)

    def cleanup(self):
        self.kill()

    def log_tail(self, lines=60):
        return read_log(self.log_path, lines, '(no log)')

    def waitFor(self, what, predicate, timeout=START_TIMEOUT):
        """Poll ``predicate()`` until it is true; fail naming ``what`` (with the log tail) if
        the process exits first or the deadline passes."""
        def ready():
            if self.process.poll() is not None:
                raise ServerError(f'{what}: exited with code {self.process.returncode};'
                                  f' log tail:\n{self.log_tail()}')
            return predicate()

        pollUntil(ready, what, timeout, describe=self.log_tail)


MASTER_TAC = '''\
import os

from twisted.application import service
from twisted.python.log import FileLogObserver
from twisted.python.log import ILogObserver
from twisted.python.logfile import LogFile

from buildbot.master import BuildMaster

basedir = os.path.abspath(os.path.dirname(__file__))
application = service.Application('buildmaster')
logfile = LogFile.fromFullPath(os.path.join(basedir, 'twistd.log'), rotateLength=10**8)
application.setComponent(ILogObserver, FileLogObserver(logfile).emit)
m = BuildMaster(basedir, 'master.cfg', None)
m.setServiceParent(application)
'''


class MasterProcess(ChildProcess):
    """A Buildbot master in its own process (twistd in the foreground).

    :param basedir: the master's directory (made if missing; ``buildbot.tac`` written)
    :param env: its environment (what its ``master.cfg`` reads); the worktree's root is put
        on ``PYTHONPATH`` so that the master imports this ``buildbot_stats`` and ``tests``
    :param liveness: ``(heartbeat seconds, expiry seconds)`` instead of Buildbot's 60 s and
        10 minutes (see ``tests/master_run.py``); None keeps Buildbot's
    :param db_url: the database its ``master.cfg`` names, for :meth:`query` (default: the
        ``state.sqlite`` file in its directory)
    """

    name = 'master'

    def __init__(self, basedir, env=None, liveness=None, master_name=None, db_url=None):
        basedir = os.path.abspath(basedir)
        os.makedirs(basedir, exist_ok=True)
        super().__init__(basedir)
        self.master_name = master_name or os.path.basename(basedir)
        env = dict(os.environ if env is None else env)
        env['PYTHONPATH'] = os.pathsep.join(
            [ROOT] + [p for p in [env.get('PYTHONPATH')] if p and p != ROOT])
        env.setdefault('PYTHONUNBUFFERED', '1')
        self.env = env
        self.liveness = liveness
        self.db_url = db_url or 'sqlite:///state.sqlite'
        self.log_path = os.path.join(basedir, 'twistd.log')
        self.stdout_path = os.path.join(basedir, 'stdout.log')
        self._logOffset = 0
        with open(os.path.join(basedir, 'buildbot.tac'), 'w', encoding='utf-8') as f:
            f.write(MASTER_TAC)

    @property
    def cfg_path(self):
        return os.path.join(self.basedir, 'master.cfg')

    def writeConfig(self, text):
        with open(self.cfg_path, 'w', encoding='utf-8') as f:
            f.write(text)

    def upgrade(self):
        """``buildbot upgrade-master``: makes (or checks) the schema of its database."""
        result = subprocess.run([os.path.join(VENV_BIN, 'buildbot'), 'upgrade-master',
                                 self.basedir], stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, env=self.env, timeout=START_TIMEOUT)
        if result.returncode != 0:
            raise ServerError(f'upgrade-master failed: {result.stdout}{result.stderr}')

    # -- running -------------------------------------------------------------------------------

    def start(self):
        """Start it; returns once its log says it runs (the log from here on:
        :meth:`newLog`)."""
        self._logOffset = len(self.logText())
        liveness = [str(v) for v in self.liveness] if self.liveness else []
        self._spawn([sys.executable, os.path.join(HERE, 'master_run.py'), self.basedir,
                     *liveness], env=self.env, stdout_path=self.stdout_path)
        self.waitLog('BuildMaster is running', self._logOffset)

    def reconfig(self):
        """SIGHUP, and wait until the master says the new config is in effect."""
        mark = len(self.logText())
        self.sendSignal(signal.SIGHUP)
        self.waitLog('configuration update complete', mark)
        log = self.logText()[mark:]
        if 'reconfig aborted' in log or 'configuration update failed' in log:
            raise ServerError(f'{self.master_name}: reconfig failed:\n{log[-4000:]}')

    def logText(self):
        return read_log(self.log_path)

    def newLog(self):
        """The log since the last :meth:`start`."""
        return self.logText()[self._logOffset:]

    def waitLog(self, text, mark=0, timeout=START_TIMEOUT):
        """Wait until ``text`` is in the master's log after offset ``mark``."""
        def seen():
            log = self.logText()[mark:]
            if 'Halting master' in log or 'while starting BuildMaster' in log:
                raise ServerError(f'{self.master_name} failed to start:\n{log[-4000:]}')
            return text in log

        self.waitFor(f'{self.master_name} ({text!r})', seen, timeout)

    # -- its database, read-only ------------------------------------------------------------------

    def query(self, sql, *args):
        """Rows of ``sql`` (``?`` placeholders) in the master's database (PostgreSQL, or
        ``state.sqlite`` in its directory), read-only."""
        if self.db_url.startswith('postgresql'):
            import psycopg2

            conn = psycopg2.connect(self.db_url.replace('+psycopg2', ''))
            try:
                conn.set_session(readonly=True, autocommit=True)
                with conn.cursor() as cur:
                    cur.execute(sql.replace('?', '%s'), args)
                    return [tuple(r) for r in cur.fetchall()]
            finally:
                conn.close()
        path = os.path.join(self.basedir, 'state.sqlite')
        conn = sqlite3.connect(f'file:{path}?mode=ro', uri=True, timeout=30)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()
