"""Several real Buildbot masters for tests: PostgreSQL, a crossbar router, masters and workers.

Everything here is a real process on loopback with a temporary directory, in the style of
:mod:`tests.servers`:

- :class:`tests.servers.PostgreSQLServer`: the masters' database (a throwaway PostgreSQL 15
  cluster).
- :class:`CrossbarRouter`: the ``crossbar`` router from PyPI, installed in a virtualenv of
  its own by ``scripts/setup-crossbar.sh`` (``.venv-crossbar``), with a minimal config: one
  realm open to anonymous, one plain ``websocket`` transport (crossbar 26 answers ``/ws`` on a
  ``web`` transport without upgrading, and Buildbot then waits silently).
- :class:`SiteMaster`: a :class:`tests.masterprocess.MasterProcess` (the one subprocess-master
  helper of the tests) with a short master liveness (``tests/master_run.py``) and Buildbot's
  REST API.
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
import tempfile
import unittest
import urllib.request

from tests.masterprocess import VENV_BIN
from tests.masterprocess import ChildProcess
from tests.masterprocess import MasterProcess
from tests.servers import PostgreSQLServer
from tests.servers import ServerError
from tests.servers import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, 'examples', 'multimaster')
# scripts/setup-crossbar.sh installs it (BUILDBOT_STATS_CROSSBAR_VENV, default .venv-crossbar)
CROSSBAR = os.environ.get('BUILDBOT_STATS_CROSSBAR', os.path.join(
    os.environ.get('BUILDBOT_STATS_CROSSBAR_VENV', os.path.join(ROOT, '.venv-crossbar')),
    'bin', 'crossbar'))
# how long a master's heartbeat may be missing before another master expires it: see
# tests/master_run.py (Buildbot's default is 10 minutes, its heartbeat every 60 s)
HEARTBEAT_SECONDS = 1
EXPIRE_SECONDS = 12
# a stop beyond this is a hang: the test goes on after a SIGKILL
STOP_TIMEOUT = 30


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


class CrossbarRouter(ChildProcess):
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


class SiteMaster(MasterProcess):
    """One master of the pair: its ports from its environment, its REST API (blocking)."""

    def __init__(self, basedir, master_name, env):
        super().__init__(basedir, env, liveness=(HEARTBEAT_SECONDS, EXPIRE_SECONDS),
                         master_name=master_name)
        self.pb_port = int(env['BUILDBOT_PB_PORT'].split(':')[1])
        self.www_port = int(env['BUILDBOT_WWW_PORT'].split(':')[1])
        self.api = f'http://127.0.0.1:{self.www_port}/api/v2'

    def stop(self, signum=signal.SIGTERM, timeout=STOP_TIMEOUT):
        super().stop(signum, timeout)

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


class WorkerProcess(ChildProcess):
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
                master = SiteMaster(basedir, name, self.env(free_port(), free_port()))
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
