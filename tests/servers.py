"""Real database servers for tests: a free loopback port, a temporary data directory, killed at the end.

The fixtures, one per server binary installed on the test machine:

- :class:`InfluxDB1Server` runs Debian's ``/usr/bin/influxd`` (InfluxDB 1.6);
- :class:`VictoriaMetricsServer` runs ``/usr/bin/victoria-metrics``;
- :class:`PrometheusServer` runs Debian's ``/usr/bin/prometheus``, scraping the targets it is
  given every second;
- :class:`PostgreSQLServer` runs Debian's PostgreSQL 15 (``/usr/lib/postgresql/15/bin``) as a
  throwaway cluster with one database, for a master's database (``url``).

Each keeps its port and data directory for their whole life, so a test can ``stop()`` the
server (an outage), ``start()`` it again and find the same address and the same data; ``pause()``
and ``resume()`` freeze the process with SIGSTOP/SIGCONT (the socket stays open, nothing answers:
the "hung server" case). While no server runs, the fixture holds its port with a socket that is
bound but does not listen: connections are refused, as by a closed port, and nothing else can take
the port before ``start()`` (another test process, or a client connecting to itself). The query
helpers here are blocking (urllib): they are for the test's own assertions, never for code under
test.

Cost of a start on the 2-core test machine (measured with tests/test_servers.py): influxd
answers ``/ping`` 0.03-0.1 s after exec, VictoriaMetrics answers ``/health`` after 0.07-0.11 s;
a graceful stop takes 0.002-0.05 s. A server per test is
therefore cheap; use one when the test stops, kills or pauses the server::

    def setUp(self):
        self.influx = InfluxDB1Server.start_new()
        self.addCleanup(self.influx.cleanup)

Note that twisted.trial ignores ``setUpClass``/``tearDownClass`` (verified with Twisted 26.10).
For one server per test run, shared by every test that only writes and reads (give each test its
own database or measurement), use :meth:`shared`: started on first use, restarted if a test left
it stopped, killed at interpreter exit::

    def setUp(self):
        self.influx = InfluxDB1Server.shared()

Every started process is also killed at interpreter exit if a test forgot to clean up.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import random
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

INFLUXD = os.environ.get('BUILDBOT_STATS_INFLUXD', '/usr/bin/influxd')
VICTORIA_METRICS = os.environ.get('BUILDBOT_STATS_VICTORIA_METRICS', '/usr/bin/victoria-metrics')

START_TIMEOUT = 30.0  # seconds; a start normally takes well under one second
STOP_TIMEOUT = 15.0  # seconds before a graceful stop becomes SIGKILL
HTTP_TIMEOUT = 30.0  # seconds for one helper request

_running: set = set()


@atexit.register
def _kill_leftovers():
    for server in list(_running):
        server.kill()


#: Ports handed out for servers and masters: below Linux's ephemeral range (32768-60999),
#: so that no client connection (nor a ``tcp:0`` listener) can take one between the check
#: and the server's own bind (port 0 would pick from that very range).
_PORTS = range(20000, 32768)
_port_choice = random.Random(os.getpid() ^ time.monotonic_ns())
#: One lock file per port handed out, locked (``flock``) by the process that picked the port
#: for as long as it lives: another test process (the other ``trial -j`` worker, another
#: checkout's test run on the same machine) skips a locked port, so two processes never pick
#: the same port between one's check and its server's bind. A lock dies with its process.
PORT_LOCKS = os.path.join(tempfile.gettempdir(), 'buildbot_stats_ports')
_port_locks: dict = {}  # port -> the open, locked file (kept open: closing unlocks)


def _lockPort(port) -> bool:
    """Take the port for this process, or False if another live process holds it."""
    import fcntl

    if port in _port_locks:
        return False  # ours already, handed out earlier
    try:
        os.makedirs(PORT_LOCKS, mode=0o1777, exist_ok=True)
        fd = os.open(os.path.join(PORT_LOCKS, str(port)), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return True  # no lock directory (read-only /tmp): the bind check below still runs
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _port_locks[port] = fd
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and that no other test
    process was given (see :data:`PORT_LOCKS`); never the same twice in one process."""
    for _ in range(1000):
        port = _port_choice.choice(_PORTS)
        if not _lockPort(port):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue  # in use by something else: keep it locked, never hand it out
            return port
    raise ServerError(f'no free port in {_PORTS.start}-{_PORTS.stop - 1} after 1000 tries')


def read_log(path, lines=None, missing='') -> str:
    """A log file's text (its last ``lines`` lines with ``lines``), or ``missing`` when it
    cannot be read (not written yet). For a server's log and a master's twistd.log."""
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return f.read() if lines is None else ''.join(f.readlines()[-lines:])
    except OSError:
        return missing


class ServerError(RuntimeError):
    """The server did not start, or a helper request failed; the message says why."""


class HTTPError(ServerError):
    def __init__(self, status, body, url):
        super().__init__(f'HTTP {status} from {url}: {body[:2000]}')
        self.status = status
        self.body = body


def _http(method, url, body=None, headers=None, timeout=HTTP_TIMEOUT):
    """Blocking request; returns (status, body text). Non-2xx answers are returned, not raised."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode('utf-8', 'replace')
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode('utf-8', 'replace')


class _ServerProcess:
    """One server binary on a fixed loopback port with its own temporary directory.

    Without the binary, :meth:`start` raises ``unittest.SkipTest`` naming the Debian package
    that installs it (``scripts/install-servers.sh`` installs them all, so CI never skips).
    """

    name = 'server'
    binary = None   # the path of the server binary
    package = None  # the Debian package that installs it
    ready_path = '/'
    ready_status = 200
    stop_signal = signal.SIGTERM  # the graceful stop
    run_as = None  # the user the server runs as (None: this process's user)

    def __init__(self, basedir=None):
        self._own_basedir = basedir is None
        self.basedir = basedir or tempfile.mkdtemp(prefix=f'buildbot_stats_{self.name}_')
        self.host = '127.0.0.1'
        self.port = free_port()
        self.url = f'http://{self.host}:{self.port}'
        self.log_path = os.path.join(self.basedir, f'{self.name}.log')
        self.process = None
        self.start_seconds = None  # wall time of the last start(), for the docs and for curiosity
        self._reservation = None
        self._reserve()

    _shared = None  # per subclass, see shared()

    @classmethod
    def shared(cls):
        """One server of this class for the whole test process (killed at exit). Tests using it
        must not stop or pause it; it is started again if one did."""
        server = cls.__dict__.get('_shared')
        if server is None:
            server = cls.start_new()
            cls._shared = server
            atexit.register(server.cleanup)
        elif not server.running:
            server.start()
        return server

    @classmethod
    def start_new(cls, basedir=None, **kwargs):
        server = cls(basedir, **kwargs)
        try:
            server.start()
        except BaseException:
            server.cleanup()
            raise
        return server

    def command(self) -> list:
        raise NotImplementedError

    def prepare(self):
        """Write config files etc. before each start."""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines=40) -> str:
        return read_log(self.log_path, lines, '(no log)')

    @classmethod
    def require(cls):
        """Raise ``unittest.SkipTest`` (naming the Debian package) without the binary."""
        if cls.binary is None:
            return  # a fixture that names no binary checks nothing here
        if not (os.path.isfile(cls.binary) and os.access(cls.binary, os.X_OK)):
            import unittest

            raise unittest.SkipTest(
                f'{cls.binary} is missing: install the Debian package {cls.package!r} '
                '(scripts/install-servers.sh does)')

    def start(self):
        self.require()
        if self.running:
            raise ServerError(f'{self.name} already running on port {self.port}')
        self.prepare()
        self._release()
        t0 = time.monotonic()
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.basedir, start_new_session=True, user=self.run_as)
        _running.add(self)
        deadline = t0 + START_TIMEOUT
        last_error = None
        while True:
            if self.process.poll() is not None:
                rc = self.process.returncode
                self.process = None
                _running.discard(self)
                raise ServerError(f'{self.name} exited with code {rc} during start;'
                                  f' log tail:\n{self.log_tail()}')
            last_error = self.not_ready()
            if last_error is None:
                break
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(f'{self.name} did not answer {self.ready_path} on port {self.port}'
                                  f' within {START_TIMEOUT}s (last error: {last_error});'
                                  f' log tail:\n{self.log_tail()}')
            time.sleep(0.02)
        self.start_seconds = time.monotonic() - t0

    def not_ready(self):
        """None once the server answers, else why not (for the error at the start deadline)."""
        try:
            status, _ = _http('GET', self.url + self.ready_path, timeout=2)
        except OSError as e:
            return e
        return None if status == self.ready_status else f'HTTP {status}'

    def stop(self, kill=False):
        """Stop the server: SIGTERM and wait (SIGKILL after STOP_TIMEOUT), or SIGKILL at once
        with ``kill=True`` (a crash). The port and data directory are kept for ``start()``."""
        if self.process is None:
            return
        proc = self.process
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
                os.kill(proc.pid, signal.SIGKILL if kill else self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.process = None
        _running.discard(self)
        self._reserve()

    def _reserve(self):
        """Hold the port while no server runs, with a socket that is bound but does not
        listen: a connection is refused, as by a closed port, and nothing else takes the port
        meanwhile: not another process of a shared machine, nor a client of the test itself
        (a connect to a loopback port nobody listens on may pick that very port as its own
        and connect to itself)."""
        if self._reservation is not None:
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((self.host, self.port))
        except OSError:
            s.close()  # taken already: start() will say so
            return
        self._reservation = s

    def _release(self):
        if self._reservation is not None:
            self._reservation.close()
            self._reservation = None

    def kill(self):
        self.stop(kill=True)

    def restart(self):
        self.stop()
        self.start()

    def pause(self):
        """Freeze the process (SIGSTOP): connections are accepted by the kernel, nothing answers.

        Returns once every thread is stopped: the signal is delivered asynchronously, and on
        a loaded machine a thread could otherwise still answer a request sent right after."""
        pid = self.process.pid
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                tasks = os.listdir(f'/proc/{pid}/task')
                states = []
                for tid in tasks:
                    with open(f'/proc/{pid}/task/{tid}/stat') as f:
                        states.append(f.read().rsplit(')', 1)[1].split()[0])
            except OSError:
                return  # no /proc (not Linux) or the thread list changed: best effort
            if all(state in ('T', 't') for state in states):
                return
            time.sleep(0.01)

    def resume(self):
        os.kill(self.process.pid, signal.SIGCONT)

    def cleanup(self):
        """Stop the server and remove its temporary directory."""
        self.kill()
        self._release()
        if self._own_basedir:
            shutil.rmtree(self.basedir, ignore_errors=True)

    def __repr__(self):
        return f'<{type(self).__name__} {self.url} {"running" if self.running else "stopped"}>'


def quote_ident(name: str) -> str:
    """An InfluxQL double-quoted identifier for any string (its scanner knows \\\\, \\" and \\n)."""
    return '"' + name.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n') + '"'


def measurement_regex(name: str) -> str:
    """An InfluxQL regex matching exactly this measurement name, whatever it contains (a quoted
    identifier cannot hold a NUL or a carriage return; a regex with \\x{..} escapes can)."""
    return '/^' + ''.join(ch if ch.isascii() and ch.isalnum() else '\\x{%x}' % ord(ch)
                          for ch in name) + '$/'


def _toml_value(value):
    """A value of influxdb.conf (TOML): a bool, a number or a quoted string."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))


class InfluxDB1Server(_ServerProcess):
    """``influxd`` 1.x with every directory in a temporary dir and both its ports on loopback.

    ``config`` adds settings to influxdb.conf, by section: ``{'data':
    {'max-series-per-database': 30}}``. It is written at every :meth:`start`, so a test may
    change ``server.config`` and :meth:`restart` the server (the data stays)."""

    name = 'influxd'
    binary = INFLUXD
    package = 'influxdb'
    ready_path = '/ping'
    ready_status = 204

    def __init__(self, basedir=None, config=None):
        super().__init__(basedir)
        # the RPC (backup/restore) port must differ per server so that parallel runs don't clash
        self.rpc_port = free_port()
        self.config_path = os.path.join(self.basedir, 'influxdb.conf')
        self.config = {section: dict(settings) for section, settings in (config or {}).items()}

    def _extra(self, section):
        return ''.join(f'  {key} = {_toml_value(value)}\n'
                       for key, value in self.config.get(section, {}).items())

    def prepare(self):
        unknown = set(self.config) - {'data', 'http'}
        if unknown:
            raise ServerError(f'InfluxDB1Server: config sections {sorted(unknown)} are not '
                              'supported (data, http)')
        d = self.basedir
        config = f'''\
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{d}/meta"

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
{self._extra('data')}
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
{self._extra('http')}
[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false
'''
        with open(self.config_path, 'w', encoding='utf-8') as f:
            f.write(config)

    def command(self):
        return [INFLUXD, 'run', '-config', self.config_path]

    # -- test-side helpers (blocking) --

    def query(self, q, db=None, epoch='ns', method=None):
        """Run InfluxQL; returns the parsed JSON answer. Raises ServerError on an HTTP error or
        on an ``error`` in any statement result."""
        params = {'q': q}
        if db is not None:
            params['db'] = db
        if epoch:
            params['epoch'] = epoch
        if method is None:
            method = 'GET' if q.lstrip().upper().startswith(('SELECT', 'SHOW')) else 'POST'
        url = f'{self.url}/query?' + urllib.parse.urlencode(params)
        status, body = _http(method, url)
        if status != 200:
            raise HTTPError(status, body, url)
        answer = json.loads(body)
        for result in answer.get('results', []):
            if 'error' in result:
                raise ServerError(f'query {q!r} failed: {result["error"]}')
        if 'error' in answer:
            raise ServerError(f'query {q!r} failed: {answer["error"]}')
        return answer

    def create_database(self, name):
        self.query(f'CREATE DATABASE {quote_ident(name)}')

    def write_raw(self, db, body, precision='ns'):
        """POST a line protocol body; returns (status, body text) whatever the status."""
        if isinstance(body, str):
            body = body.encode('utf-8')
        url = f'{self.url}/write?' + urllib.parse.urlencode({'db': db, 'precision': precision})
        return _http('POST', url, body=body)

    def write_lines(self, db, lines, precision='ns'):
        """Write lines (str or list of str) and raise HTTPError unless the server says 204."""
        if not isinstance(lines, str):
            lines = '\n'.join(lines)
        status, body = self.write_raw(db, lines, precision)
        if status != 204:
            raise HTTPError(status, body, f'{self.url}/write?db={db}')

    def points(self, db, measurement):
        """Every row of a measurement as a dict (tags and fields; absent ones left out) with an
        exact integer-nanosecond ``time``, oldest first."""
        answer = self.query(f'SELECT * FROM {measurement_regex(measurement)}', db=db)
        rows = []
        for result in answer['results']:
            for series in result.get('series', []):
                cols = series['columns']
                for values in series['values']:
                    rows.append({c: v for c, v in zip(cols, values) if v is not None})
        rows.sort(key=lambda r: r['time'])
        return rows

    def read_points(self, db, measurement):
        """Every point of a measurement as ``{'time': ns, 'tags': {...}, 'fields': {...}}``,
        oldest first; tags and fields kept apart even when a tag and a field share a key."""
        answer = self.query(f'SELECT *::field FROM {measurement_regex(measurement)} GROUP BY *',
                            db=db)
        out = []
        for result in answer['results']:
            for series in result.get('series', []):
                tags = {k: v for k, v in series.get('tags', {}).items() if v != ''}
                cols = series['columns']
                for values in series['values']:
                    row = dict(zip(cols, values))
                    t = row.pop('time')
                    out.append({'time': t, 'tags': tags,
                                'fields': {k: v for k, v in row.items() if v is not None}})
        out.sort(key=lambda r: r['time'])
        return out

    def measurements(self, db):
        answer = self.query('SHOW MEASUREMENTS', db=db)
        series = answer['results'][0].get('series', [])
        return sorted(v[0] for s in series for v in s['values'])

    def field_types(self, db, measurement):
        """{field key: 'float' | 'integer' | 'string' | 'boolean'} of a measurement."""
        answer = self.query(f'SHOW FIELD KEYS FROM {measurement_regex(measurement)}', db=db)
        series = answer['results'][0].get('series', [])
        return {k: t for s in series for k, t in s['values']}

    def tag_keys(self, db, measurement):
        answer = self.query(f'SHOW TAG KEYS FROM {measurement_regex(measurement)}', db=db)
        series = answer['results'][0].get('series', [])
        return sorted(v[0] for s in series for v in s['values'])

    def series_count(self, db, where=None):
        """The exact number of series of ``db`` (``SHOW SERIES EXACT CARDINALITY``), of those
        matching ``where`` (an InfluxQL condition) when given."""
        q = 'SHOW SERIES EXACT CARDINALITY' + (f' WHERE {where}' if where else '')
        answer = self.query(q, db=db)
        return sum(v[0] for s in answer['results'][0].get('series', []) for v in s['values'])


class VictoriaMetricsServer(_ServerProcess):
    """``victoria-metrics`` single-node with its storage in a temporary dir.

    It accepts InfluxDB line protocol at ``/write`` (and ``/api/v2/write``) and stores each field
    as its own series ``{measurement}_{field}`` with the tags as labels (plus ``db`` when the write
    names one). It keeps timestamps to the millisecond (``-influxTrimTimestamp`` default 1ms).
    """

    name = 'victoria-metrics'
    binary = VICTORIA_METRICS
    package = 'victoria-metrics'
    ready_path = '/health'
    ready_status = 200

    def command(self):
        return [VICTORIA_METRICS,
                f'-httpListenAddr={self.host}:{self.port}',
                f'-storageDataPath={os.path.join(self.basedir, "data")}',
                '-retentionPeriod=100y',
                # fresh points are visible to queries at once instead of after 30 s
                '-search.latencyOffset=0s',
                '-search.disableCache']

    def write_raw(self, body, db=None, precision='ns'):
        """POST InfluxDB line protocol to ``/write``; returns (status, body text)."""
        if isinstance(body, str):
            body = body.encode('utf-8')
        params = {'precision': precision}
        if db is not None:
            params['db'] = db
        return _http('POST', f'{self.url}/write?' + urllib.parse.urlencode(params), body=body)

    def write_lines(self, lines, db=None, precision='ns'):
        if not isinstance(lines, str):
            lines = '\n'.join(lines)
        status, body = self.write_raw(lines, db, precision)
        if status != 204:
            raise HTTPError(status, body, f'{self.url}/write')

    def force_flush(self):
        """Make just-written samples visible to reads (they wait in memory for ~1 s otherwise)."""
        status, body = _http('GET', f'{self.url}/internal/force_flush')
        if status != 200:
            raise HTTPError(status, body, f'{self.url}/internal/force_flush')

    def export(self, match='{__name__!=""}'):
        """Every series matching a selector, as a list of ``{'metric': {labels}, 'values': [...],
        'timestamps': [ms, ...]}`` (VictoriaMetrics' JSON-lines export), sorted by labels."""
        self.force_flush()
        url = f'{self.url}/api/v1/export?' + urllib.parse.urlencode({'match[]': match})
        status, body = _http('GET', url)
        if status != 200:
            raise HTTPError(status, body, url)
        series = [json.loads(line) for line in body.splitlines() if line.strip()]
        series.sort(key=lambda s: sorted(s['metric'].items()))
        return series

    def samples(self, match='{__name__!=""}'):
        """Every sample as ``(labels dict incl. __name__, timestamp ms, value)``, sorted."""
        out = []
        for s in self.export(match):
            for ts, v in zip(s['timestamps'], s['values']):
                out.append((s['metric'], ts, v))
        out.sort(key=lambda x: (sorted(x[0].items()), x[1]))
        return out


PROMETHEUS = os.environ.get('BUILDBOT_STATS_PROMETHEUS', '/usr/bin/prometheus')


class PrometheusServer(_ServerProcess):
    """Debian's ``prometheus`` scraping ``targets`` (``host:port`` strings) every second,
    its TSDB in a temporary dir. Query with :meth:`query` (PromQL over the HTTP API)."""

    name = 'prometheus'
    binary = PROMETHEUS
    package = 'prometheus'
    ready_path = '/-/ready'
    ready_status = 200

    def __init__(self, basedir=None, targets=(), metrics_path='/metrics', jobs=None):
        """``jobs``: scrape configs of their own instead of the one job ``buildbot``, each
        a dict of prometheus.yml's ``scrape_configs`` entry (``job_name``,
        ``metrics_path``, ``static_configs``, ``authorization``, ``basic_auth``...)."""
        super().__init__(basedir)
        self.targets = list(targets)
        self.metrics_path = metrics_path
        self.jobs = jobs
        self.config_path = os.path.join(self.basedir, 'prometheus.yml')

    def prepare(self):
        config = {
            'global': {'scrape_interval': '1s', 'scrape_timeout': '1s',
                       'evaluation_interval': '1s'},
            'scrape_configs': self.jobs if self.jobs is not None else [{
                'job_name': 'buildbot',
                'metrics_path': self.metrics_path,
                'static_configs': [{'targets': self.targets}],
            }],
        }
        # JSON is YAML
        with open(self.config_path, 'w', encoding='utf-8') as f:
            json.dump(config, f)

    def command(self):
        return [PROMETHEUS,
                f'--config.file={self.config_path}',
                f'--storage.tsdb.path={os.path.join(self.basedir, "data")}',
                f'--web.listen-address={self.host}:{self.port}',
                '--log.level=warn']

    def query(self, promql):
        """The ``result`` of an instant PromQL query at the server's now: a list of
        ``{'metric': {labels}, 'value': [time, 'value']}``. Blocking."""
        url = f'{self.url}/api/v1/query?' + urllib.parse.urlencode({'query': promql})
        status, body = _http('GET', url)
        if status != 200:
            raise HTTPError(status, body, url)
        answer = json.loads(body)
        if answer.get('status') != 'success':
            raise ServerError(f'query {promql!r} failed: {answer}')
        return answer['data']['result']

    def values(self, promql, *labels):
        """``{(label values...): float}`` of an instant query (a scalar-less vector)."""
        return {tuple(r['metric'].get(k, '') for k in labels): float(r['value'][1])
                for r in self.query(promql)}

    def targets_health(self):
        status, body = _http('GET', f'{self.url}/api/v1/targets')
        return [(t['scrapeUrl'], t['health'], t.get('lastError'))
                for t in json.loads(body)['data']['activeTargets']]

    def jobs_health(self):
        """``{job name: (health, last error)}`` of the targets, once each was scraped
        (``'unknown'`` before)."""
        status, body = _http('GET', f'{self.url}/api/v1/targets')
        return {t['labels']['job']: (t['health'], t.get('lastError') or '')
                for t in json.loads(body)['data']['activeTargets']}


PG_BIN = os.environ.get('BUILDBOT_STATS_PG_BIN', '/usr/lib/postgresql/15/bin')


class PostgreSQLServer(_ServerProcess):
    """A throwaway PostgreSQL 15 cluster (Debian's ``postgresql``): ``initdb`` on the first
    start, ``postgres`` in the foreground on loopback (its unix socket in the temporary dir),
    trust authentication, one database ``database`` owned by ``postgres``. PostgreSQL refuses
    to run as root: as root, it runs as the ``postgres`` user, who owns the temporary dir.
    ``url`` is the SQLAlchemy URL a Buildbot master takes (psycopg2, from the test extra)."""

    name = 'postgres'
    binary = os.path.join(PG_BIN, 'initdb')
    package = 'postgresql'
    ready_path = 'pg_isready'
    stop_signal = signal.SIGINT  # PostgreSQL's fast shutdown (SIGTERM waits for every client)
    user = 'postgres'

    def __init__(self, basedir=None, database='buildbot'):
        super().__init__(basedir)
        self.database = database
        self.datadir = os.path.join(self.basedir, 'data')
        self.url = (f'postgresql+psycopg2://{self.user}@{self.host}:{self.port}/'
                    f'{self.database}')
        self._created = False
        if os.geteuid() == 0:
            self.run_as = 'postgres'
            shutil.chown(self.basedir, user='postgres', group='postgres')
            os.chmod(self.basedir, 0o755)

    @classmethod
    def require(cls):
        super().require()
        if os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam('postgres')
            except KeyError:
                import unittest

                raise unittest.SkipTest('no postgres user to run PostgreSQL as: install the '
                                        f'Debian package {cls.package!r}') from None

    def _run(self, name, *args):
        command = [os.path.join(PG_BIN, name)] + list(args)
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, cwd=self.basedir, user=self.run_as,
                                timeout=START_TIMEOUT)
        if result.returncode != 0:
            raise ServerError(f'{name} failed ({result.returncode}): '
                              f'{result.stdout}{result.stderr}')

    def prepare(self):
        if not os.path.exists(self.datadir):
            self._run('initdb', '-D', self.datadir, '-U', self.user, '--auth=trust',
                      '--encoding=UTF8', '--no-sync', '--no-instructions')

    def command(self):
        return [os.path.join(PG_BIN, 'postgres'), '-D', self.datadir, '-p', str(self.port),
                '-k', self.basedir, '-c', f'listen_addresses={self.host}',
                # a throwaway cluster: speed over durability
                '-c', 'fsync=off', '-c', 'synchronous_commit=off',
                '-c', 'full_page_writes=off']

    def not_ready(self):
        result = subprocess.run([os.path.join(PG_BIN, 'pg_isready'), '-q', '-h', self.host,
                                 '-p', str(self.port)], stdin=subprocess.DEVNULL)
        return None if result.returncode == 0 else f'pg_isready exit status {result.returncode}'

    def start(self):
        super().start()
        if not self._created:
            self._run('createdb', '-h', self.basedir, '-p', str(self.port), '-U', self.user,
                      self.database)
            self._created = True

    def cleanup(self):
        # a fast shutdown first: a killed postmaster leaves its backends to notice alone
        self.stop()
        super().cleanup()

    def query(self, sql, params=()):
        """Rows of one SQL statement, committed (blocking, for the test's assertions)."""
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                dbname=self.database)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description is not None else []
        finally:
            conn.close()
