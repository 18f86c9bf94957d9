"""What every benchmark shares: variants in fresh subprocesses, one JSON line, the machine,
the reactor lag probe, an InfluxDB 1.x to write to and a way to count what reached it.

A benchmark script runs in two roles:

* the *parent* (``python benchmarks/burst.py --n 1000``) starts InfluxDB, runs each variant
  in a fresh child process, and prints ONE JSON line with every variant's figures;
* a *child* (the same script with ``--child VARIANT``) runs one variant and prints its own
  JSON figures as its last stdout line. A fresh process per variant keeps CPU seconds
  (``time.process_time``: every thread of the process) and peak memory (``VmHWM``) clean.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    # ``python benchmarks/x.py`` from a checkout: import the package and the test fixtures
    sys.path.insert(0, ROOT)

# Python's float repr is long; these are figures, not data
ROUND = 4


def r(x):
    """``x`` with its floats rounded, recursively (figures, not data)."""
    if isinstance(x, float):
        return round(x, ROUND)
    if isinstance(x, dict):
        return {k: r(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [r(v) for v in x]
    return x


# -- the machine ---------------------------------------------------------------------------


def _version(dist):
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def influxd_version():
    try:
        out = subprocess.run(['influxd', 'version'], capture_output=True, text=True, timeout=10)
        return out.stdout.strip().split(' (')[0]
    except Exception:
        return None


def machine():
    """Where the figures come from: cores, CPU model, versions."""
    model = None
    try:
        with open('/proc/cpuinfo', encoding='ascii', errors='replace') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        'cores': os.cpu_count(),
        'cpu': model,
        'python': platform.python_version(),
        'buildbot': _version('buildbot'),
        'twisted': _version('twisted'),
        'influxdb': influxd_version(),
    }


# -- a child's own figures -----------------------------------------------------------------


def peak_rss_mb():
    """The process's peak resident memory (VmHWM), in MiB."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb(pid='self'):
    """A process's current resident memory (VmRSS), in MiB: this one's by default."""
    with open(f'/proc/{pid}/status', encoding='ascii') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return None


def emit(result):
    """Print a result as the one JSON line of this process."""
    print(json.dumps(r(result)), flush=True)


class LagProbe:
    """A 10 ms LoopingCall that records how late it ran, at worst.

    The reactor lag is the delay between when a call was due and when it ran: anything that
    holds the reactor thread (a long callback, a big synchronous loop) shows up here.
    """

    def __init__(self, reactor, interval=0.01):
        from twisted.internet import task

        self.reactor = reactor
        self.interval = interval
        self.worst = 0.0
        self.ticks = 0
        self.late = 0  # ticks 20 ms or more late
        self._last = None
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = reactor

    def start(self):
        self._last = self.reactor.seconds()
        self._loop.start(self.interval, now=False)

    def _tick(self):
        now = self.reactor.seconds()
        lag = now - self._last - self.interval
        if lag > self.worst:
            self.worst = lag
        if lag >= 0.02:
            self.late += 1
        self.ticks += 1
        self._last = now

    def stop(self):
        if self._loop.running:
            self._loop.stop()
        return self.worst


# -- running variants ----------------------------------------------------------------------


def exit_on_sigterm():
    """SIGTERM runs the ``finally`` blocks (the InfluxDB fixture is stopped)."""
    import signal

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))


def run_child(script, variant, args, timeout=3600):
    """Run ``script --child variant args...`` in a fresh interpreter; its last JSON line."""
    cmd = [sys.executable, script, '--child', variant] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-3000:]
        return {'error': f"variant {variant!r} failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])


# -- a real master --------------------------------------------------------------------------


def dict_loader(config_dict):
    """A config loader for a dict (buildbot.test's DictLoader, whose module import would
    set the unit tests' warning filters and monkeypatches)."""
    from zope.interface import implementer

    from buildbot.config.master import MasterConfig
    from buildbot.interfaces import IConfigLoader

    @implementer(IConfigLoader)
    class DictLoader:
        def loadConfig(self):
            return MasterConfig.loadFromDict(config_dict, '<dict>')

    return DictLoader()


async def start_master(reactor, basedir, cfg):
    """A real ``BuildMaster`` in ``basedir`` configured by the dict ``cfg`` (its ``db_url``
    created or upgraded first), started; returns it."""
    from buildbot.master import BuildMaster

    master = BuildMaster(basedir, reactor=reactor, config_loader=dict_loader(cfg))
    master.config.db.db_url = cfg['db_url']
    await master.db.setup(check_version=False)
    await master.db.model.upgrade()
    master.db.setup = lambda: None
    await master.startService()
    return master


# -- InfluxDB ------------------------------------------------------------------------------


def servers_module():
    """The tests' server fixtures (tests/servers.py), loaded by path.

    Importing it as ``tests.servers`` would run ``tests/__init__.py``, which turns every
    warning into an error and monkeypatches Buildbot for its unit tests: not what a benchmark
    of a real master wants.
    """
    import importlib.util

    name = 'buildbot_stats_bench_servers'
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'tests', 'servers.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def start_influxdb():
    """A private InfluxDB 1.x on a free loopback port and temp dir (the tests' fixture)."""
    return servers_module().InfluxDB1Server.start_new()


def influx_query(port, q, db=None):
    params = {'q': q}
    if db:
        params['db'] = db
    url = f"http://127.0.0.1:{port}/query?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def count_field_values(port, db):
    """How many field values the database holds (sum of ``count(*)`` over every series)."""
    res = influx_query(port, 'SELECT count(*) FROM /.*/', db)
    total = 0
    for result in res.get('results', []):
        for series in result.get('series', []) or []:
            for row in series.get('values', []):
                total += sum(v for v in row[1:] if isinstance(v, int))
    return total


def count_points(port, db, measurement, field):
    """How many points a measurement holds (the count of one field every point has)."""
    res = influx_query(port, f'SELECT count("{field}") FROM "{measurement}"', db)
    for result in res.get('results', []):
        for series in result.get('series', []) or []:
            return series['values'][0][1]
    return 0


def run_main(parser, child, parent, argv=None, defaults=None):
    """Add the arguments a parent passes to its children, parse, and run the right half.
    ``defaults(args)`` may fill in defaults that depend on other arguments."""
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--influx-port', type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument('--db', default='', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if defaults is not None:
        defaults(args)
    if args.child:
        child(args)
    else:
        parent(args)
