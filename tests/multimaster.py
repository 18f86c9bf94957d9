"""Several real Buildbot masters for tests: PostgreSQL, a crossbar router, masters and workers.

Everything here is a real process on loopback with a temporary directory, in the style of
:mod:`tests.servers`:

- :class:`tests.servers.PostgreSQLServer`: the masters' database (a throwaway PostgreSQL 15
  cluster).
- :class:`CrossbarRouter`: the ``crossbar`` router from PyPI, installed in a virtualenv of
  its own by ``scripts/setup-crossbar.sh`` (``.venv-crossbar``), with a minimal config: one
  realm open to anonymous, one plain ``websocket`` transport (crossbar 26 answers ``/ws`` on a
  ``web`` transport without upgrading, and Buildbot then waits silently).
- :class:`MasterProcess`: ``twistd`` running a master's ``buildbot.tac`` in the foreground,
  through ``tests/multimaster_run.py`` (a short master liveness, see there).
- :class:`WorkerProcess`: a real ``buildbot-worker`` connecting over PB.

:class:`MultiMaster` puts them together: one database, one router, one InfluxDB (shared, from
:mod:`tests.servers`), two masters whose ``master.cfg`` are the shipped
``examples/multimaster`` pair, each with its own worker. ``cleanup()`` stops everything
(it is registered with ``atexit`` too), and removes the temporary directories.

The helpers are blocking (subprocess, urllib, psycopg2): they are the test's own, never code
under test; the test calls them between events, from the reactor thread or a thread.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest
import urllib.request

from tests.servers import PostgreSQLServer
from tests.servers import ServerError
from tests.servers import free_port
from tests.servers import read_log
from tests.waiting import pollUntil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, 'examples', 'multimaster')
# scripts/setup-crossbar.sh installs it (BUILDBOT_STATS_CROSSBAR_VENV, default .venv-crossbar)
CROSSBAR = os.environ.get('BUILDBOT_STATS_CROSSBAR', os.path.join(
    os.environ.get('BUILDBOT_STATS_CROSSBAR_VENV', os.path.join(ROOT, '.venv-crossbar')),
    'bin', 'crossbar'))
VENV_BIN = os.path.dirname(sys.executable)
# a master on a loaded 2-core machine takes 5-15 s to start (imports, schema checks)
START_TIMEOUT = 120
STOP_TIMEOUT = 30
# how long a master's heartbeat may be missing before another master expires it: see
# tests/multimaster_run.py (Buildbot's default is 10 minutes, its heartbeat every 60 s)
HEARTBEAT_SECONDS = 1
EXPIRE_SECONDS = 12

_running: set = set()


@atexit.register
def _kill_leftovers():
    for proc in list(_running):
        proc.kill()


def missing():
    """Why the multi-master set-up cannot run here (a string), or None."""
    try:
        PostgreSQLServer.require()
    except unittest.SkipTest as e:
        return str(e)
    if not os.access(CROSSBAR, os.X_OK):
        return f'{CROSSBAR} not found (run scripts/setup-crossbar.sh)'
    try:
        import autobahn  # noqa: F401
        import psycopg2  # noqa: F401
    except ImportError as e:
        return f'{e.name} is not installed (pip install -e .[test])'
    return None


def _portOpen(port):
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=1):
            return True
    except OSError:
        return False


class _Process:
    """One long-running child process in its own session, with a log file."""

    name = 'process'

    def __init__(self, basedir):
        self.basedir = basedir
        self.log_path = os.path.join(basedir, f'{self.name}.log')
        self.process = None

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def _spawn(self, command, env=None, cwd=None, user=None):
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=cwd or self.basedir, env=env, start_new_session=True, user=user)
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


class CrossbarRouter(_Process):
    """crossbar with one realm and one websocket transport on a free loopback port."""

    name = 'crossbar'
    realm = 'buildbot'

    def __init__(self):
        super().__init__(tempfile.mkdtemp(prefix='buildbot_stats_crossbar_'))
        self.port = free_port()
        self.url = f'ws://127.0.0.1:{self.port}/ws'
        self.cbdir = os.path.join(self.basedir, '.crossbar')

    def config(self):
        anyone = {'uri': '', 'match': 'prefix',
                  'allow': {'call': True, 'register': True, 'publish': True,
                            'subscribe': True},
                  'disclose': {'caller': False, 'publisher': False}, 'cache': True}
        return {
            'version': 2,
            'controller': {},
            'workers': [{
                'type': 'router',
                'realms': [{'name': self.realm,
                            'roles': [{'name': 'anonymous', 'permissions': [anyone]}]}],
                'transports': [{
                    'type': 'websocket',
                    'endpoint': {'type': 'tcp', 'interface': '127.0.0.1', 'port': self.port},
                    # the messages of one build are small; a large build's log lines do not
                    # go through the MQ
                    'options': {'max_message_size': 16 * 1024 * 1024},
                }],
            }],
        }

    def start(self):
        os.makedirs(self.cbdir, exist_ok=True)
        with open(os.path.join(self.cbdir, 'config.json'), 'w', encoding='utf-8') as f:
            json.dump(self.config(), f, indent=2)
        self._spawn([CROSSBAR, 'start', '--cbdir', self.cbdir, '--loglevel', 'info'])
        self.waitFor('crossbar', lambda: _portOpen(self.port))

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.basedir, ignore_errors=True)


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

WORKER_TAC = '''\
import os

from twisted.application import service

from buildbot_worker.bot import Worker

basedir = os.path.abspath(os.path.dirname(__file__))
application = service.Application('buildbot-worker')
# maxdelay: reconnect within 2 s once a restarted master listens again
Worker('127.0.0.1', {port}, {name!r}, {password!r}, basedir, 600, umask=0o22,
       maxdelay=2).setServiceParent(application)
'''


class MasterProcess(_Process):
    """A Buildbot master in its own process (twistd in the foreground)."""

    name = 'master'

    def __init__(self, basedir, master_name, env):
        super().__init__(basedir)
        self.master_name = master_name
        self.env = env
        self.log_path = os.path.join(basedir, 'twistd.log')
        self.stdout_path = os.path.join(basedir, 'stdout.log')
        self.pb_port = int(env['BUILDBOT_PB_PORT'].split(':')[1])
        self.www_port = int(env['BUILDBOT_WWW_PORT'].split(':')[1])
        self.api = f'http://127.0.0.1:{self.www_port}/api/v2'
        with open(os.path.join(basedir, 'buildbot.tac'), 'w', encoding='utf-8') as f:
            f.write(MASTER_TAC)

    @property
    def cfg_path(self):
        return os.path.join(self.basedir, 'master.cfg')

    def logText(self):
        return read_log(self.log_path)

    def upgrade(self):
        """``buildbot upgrade-master``: creates the schema in the shared database."""
        result = subprocess.run([os.path.join(VENV_BIN, 'buildbot'), 'upgrade-master',
                                 self.basedir], stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, env=self.env)
        if result.returncode != 0:
            raise ServerError(f'upgrade-master failed: {result.stdout}{result.stderr}')

    def start(self):
        mark = len(self.logText())
        with open(self.stdout_path, 'ab') as out:
            self.process = subprocess.Popen(
                [sys.executable, os.path.join(HERE, 'multimaster_run.py'),
                 str(HEARTBEAT_SECONDS), str(EXPIRE_SECONDS), self.basedir],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.basedir, env=self.env, start_new_session=True)
        _running.add(self)
        self.waitLog('BuildMaster is running', mark)

    def waitLog(self, text, mark=0, timeout=START_TIMEOUT):
        """Wait until ``text`` is in the master's log after offset ``mark``."""
        def seen():
            log = self.logText()[mark:]
            if 'Halting master' in log or 'while starting BuildMaster' in log:
                raise ServerError(f'{self.master_name} failed to start:\n{log[-4000:]}')
            return text in log

        self.waitFor(f'{self.master_name} ({text!r})', seen, timeout)

    def reconfig(self):
        """SIGHUP, and wait until the master says the new config is in effect."""
        mark = len(self.logText())
        self.sendSignal(signal.SIGHUP)
        self.waitLog('configuration update complete', mark)
        log = self.logText()[mark:]
        if 'reconfig aborted' in log or 'configuration update failed' in log:
            raise ServerError(f'{self.master_name}: reconfig failed:\n{log[-4000:]}')

    def stop(self, signum=signal.SIGTERM, timeout=STOP_TIMEOUT):
        super().stop(signum, timeout)

    # -- the REST API (blocking) ----------------------------------------------------------

    def get(self, path):
        with urllib.request.urlopen(f'{self.api}/{path}', timeout=30) as resp:
            return json.loads(resp.read())

    def rpc(self, path, method, **params):
        body = json.dumps({'jsonrpc': '2.0', 'id': 1, 'method': method,
                           'params': params}).encode()
        req = urllib.request.Request(f'{self.api}/{path}', data=body, method='POST',
                                     headers={'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.loads(resp.read())
        if 'error' in answer:
            raise ServerError(f'{path} {method}: {answer["error"]}')
        return answer['result']


class WorkerProcess(_Process):
    name = 'worker'

    def __init__(self, basedir, worker_name, master_port, password):
        super().__init__(basedir)
        self.worker_name = worker_name
        with open(os.path.join(basedir, 'buildbot.tac'), 'w', encoding='utf-8') as f:
            f.write(WORKER_TAC.format(port=master_port, name=worker_name, password=password))

    def start(self):
        self._spawn([os.path.join(VENV_BIN, 'twistd'), '--nodaemon', '--no_save',
                     '--pidfile=', '--logfile', self.log_path, '-y', 'buildbot.tac'])


class MultiMaster:
    """PostgreSQL + crossbar + two masters (the examples/multimaster pair), each with its
    worker, writing to ``influx`` (a :class:`tests.servers.InfluxDB1Server`).

    ``extra_cfg`` is Python appended to both master.cfg files (a test-only builder).
    """

    PASSWORD = 'pass'
    NAMES = ('master-a', 'master-b')

    def __init__(self, influx, extra_cfg=''):
        self.influx = influx
        self.extra_cfg = extra_cfg
        self.basedir = tempfile.mkdtemp(prefix='buildbot_stats_multimaster_')
        self.postgres = None
        self.router = None
        self.masters = {}
        self.workers = {}
        atexit.register(self.cleanup)

    def env(self, pb_port, www_port):
        env = dict(os.environ)
        env.update({
            'BUILDBOT_DB_URL': self.postgres.url,
            'BUILDBOT_MQ_URL': self.router.url,
            'BUILDBOT_MQ_REALM': self.router.realm,
            'BUILDBOT_INFLUXDB_URL': self.influx.url,
            'BUILDBOT_PB_PORT': f'tcp:{pb_port}:interface=127.0.0.1',
            'BUILDBOT_WWW_PORT': f'tcp:{www_port}:interface=127.0.0.1',
            'BUILDBOT_WORKER_PASSWORD': self.PASSWORD,
            'PYTHONPATH': os.pathsep.join([ROOT] + [p for p in [env.get('PYTHONPATH')] if p]),
        })
        return env

    def writeConfig(self, master, text=None):
        """The shipped master-X.cfg (plus ``extra_cfg``), or ``text``, as master.cfg."""
        shutil.copy(os.path.join(EXAMPLES, 'site_config.py'), master.basedir)
        if text is None:
            letter = master.master_name[-1]
            with open(os.path.join(EXAMPLES, f'master-{letter}.cfg'), encoding='utf-8') as f:
                text = f.read() + '\n' + self.extra_cfg
        with open(master.cfg_path, 'w', encoding='utf-8') as f:
            f.write(text)

    def start(self):
        try:
            self.postgres = PostgreSQLServer.start_new()
            self.router = CrossbarRouter()
            self.router.start()
            for name in self.NAMES:
                basedir = os.path.join(self.basedir, name)
                os.makedirs(basedir)
                master = MasterProcess(basedir, name, self.env(free_port(), free_port()))
                self.writeConfig(master)
                self.masters[name] = master
            # the schema, once, in the shared database
            self.masters[self.NAMES[0]].upgrade()
            for name, master in self.masters.items():
                master.start()
                worker_name = 'worker-' + name[-1]
                wdir = os.path.join(self.basedir, worker_name)
                os.makedirs(wdir)
                worker = WorkerProcess(wdir, worker_name, master.pb_port, self.PASSWORD)
                worker.start()
                self.workers[name] = worker
        except BaseException:
            self.cleanup()
            raise

    def cleanup(self):
        for proc in list(self.workers.values()) + list(self.masters.values()):
            proc.stop()
        for server in (self.router, self.postgres):
            if server is not None:
                server.cleanup()
        shutil.rmtree(self.basedir, ignore_errors=True)
