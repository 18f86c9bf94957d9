"""buildbot-stats given what users get wrong: a table of cases (paths, times, names, damaged
stores, locked databases, master.cfg files holding a password), and the signals.

Every case of the table runs in-process through the CLI's entry (``cli.main.main``), stdout
and stderr captured, and must end as the table says: a mistake is exit status 2 and one line
on standard error saying what; never a traceback (nor a traceback file: an internal error),
never a store or another file of the fixture changed, deleted or given a ``-wal``/``-shm``
beside it, never a temporary file left, never the password on screen. What needs a database
behind Buildbot (a reactor, which runs once per process) or a signal runs as a subprocess.

A command added to the CLI adds its cases here (:data:`CASES`, :data:`SIGNAL_CASES`):
:meth:`Table.test_every_command_has_cases` fails until it does.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from dataclasses import field

from twisted.internet import defer
from twisted.trial import unittest

from buildbot_stats.cli import main as cli_main
from buildbot_stats.cli.safewrite import TEMP_SUFFIX
from buildbot_stats.outcomes import FAILED
from buildbot_stats.outcomes import PASSED
from buildbot_stats.outcomes import TestRun
from buildbot_stats.storage.sqlite.schema import APPLICATION_ID
from buildbot_stats.storage.sqlite.values import encodeRow
from buildbot_stats.storage.sqlite.writer import StoreWriter
from tests.test_cli import command

PASSWORD = 'hunter2-Qx7v'
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# -- the fixture: files a user may point the commands at ----------------------------------------


def writeStore(path, points):
    """A store of ``points`` (``[(series, tags, fields, time)]``), checkpointed: no -wal."""
    writer = StoreWriter(busy_timeout=5.0)
    writer.write(path, [encodeRow(*p) for p in points])
    writer.close()


def sqlite(path, *statements):
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def storePoints(n_builds=6, builder='alpha'):
    points = []
    for i in range(n_builds):
        tags = {'builder_name': builder, 'build_number': str(i + 1)}
        points.append((f'{builder}-build-times', tags, {'duration': 10.0 + i}, T0 + 60 * i))
        points.append((f'{builder}-coverage', tags, {'percent': 80.0 + i}, T0 + 60 * i + 1))
    return points


def writeTestStore(path, builds=4, tests=3, prefix='pkg.test_'):
    """A store of per-test history (CaptureTestHistory's tables): on ``alpha``, ``tests``
    tests in each of ``builds`` builds, each failing in the odd builds (all flaky), and
    one whose name holds a line break and a terminal escape."""
    runs = []
    for b in range(1, builds + 1):
        run = TestRun('alpha', b, 100 + b, T0 + 60 * b, revision=f"r{b}", buildset=b)
        cases = [(f"{prefix}{i:05d}", FAILED if b % 2 else PASSED, 0.01 * (i % 7))
                 for i in range(tests)]
        cases.append(("odd\nname\x1b[2J", PASSED, 0.5))
        runs.append((run, cases))
    writer = StoreWriter(busy_timeout=5.0)
    writer.write(path, [], tests=runs)
    writer.close()


def masterCfg(services, head=''):
    """A master.cfg with one builder, ``head`` and then ``services`` (its last lines)."""
    return textwrap.dedent('''\
        from buildbot.plugins import schedulers, util, worker
        from buildbot_stats import stats
        c = BuildmasterConfig = {}
        c['buildbotNetUsageData'] = None
        c['workers'] = [worker.Worker('w', 'pw')]
        c['protocols'] = {'pb': {'port': 0}}
        c['schedulers'] = [schedulers.ForceScheduler(name='f', builderNames=['alpha'])]
        c['builders'] = [util.BuilderConfig(name='alpha', workernames=['w'],
                                            factory=util.BuildFactory())]
        c['db'] = {'db_url': 'sqlite:///state.sqlite'}
        ''') + head + services


INFLUX = ("stats.InfluxStorageService('influx.example.org', 8086, 'buildbot', "
          f"'{PASSWORD}', 'buildbot', captures={{captures}})")

MASTERS = {
    'm-empty': None,  # a directory without master.cfg
    'm-syntax': "c['services'] = [stats.StatsService(storage_backends=[" +
                INFLUX.format(captures='[]') + "]\n",
    'm-name': "c['services'] = [stats.StatsService(storage_backends=[undefined_name])]\n",
    'm-config': "c['services'] = [stats.StatsService(storage_backends=[" + INFLUX.format(
        captures="[stats.CaptureBuildDuration('alpha', report_in='days')]") + "])]\n",
    'm-keyword': "c['services'] = [stats.StatsService(storage_backends=[" + INFLUX.format(
        captures="[stats.CaptureBuildDuration('alpha', reportin='minutes')]") + "])]\n",
    'm-alone': "c['services'] = stats.StatsService()\n",
    'm-none': "c['services'] = []\n",
    'm-two': "c['services'] = [stats.StatsService(), stats.StatsService(name='other')]\n",
    'm-memory': "c['db'] = {'db_url': 'sqlite://'}\nc['services'] = [stats.StatsService()]\n",
    'm-pg': f"c['db'] = {{'db_url': 'postgresql://bb:{PASSWORD}@127.0.0.1:1/bb'}}\n"
            "c['services'] = [stats.StatsService()]\n",
    'm-good': "c['services'] = [stats.StatsService()]\n",
    'm-tac': "c['services'] = [stats.StatsService()]\n",
}


def buildFixture(d):
    store = os.path.join(d, 'stats.sqlite')
    writeStore(store, storePoints())
    with open(store, 'rb') as f:
        data = f.read()
    files = {
        'empty.sqlite': b'',
        'notes.txt': b'hello\n',
        'header.sqlite': data[:100],
        'truncated.sqlite': data[:3000],
        'garbage.sqlite': data[:4096] + b'\xa5' * (len(data) - 4096),
        'old.csv': b'the export of last week\n',
    }
    for name, content in files.items():
        with open(os.path.join(d, name), 'wb') as f:
            f.write(content)
    sqlite(os.path.join(d, 'state.sqlite'), "CREATE TABLE builds (id INTEGER)")
    for name, version, app in (('newer.sqlite', 99, APPLICATION_ID), ('foreign.sqlite', 2, 7)):
        writeStore(os.path.join(d, name), storePoints(2))
        sqlite(os.path.join(d, name), f"PRAGMA user_version = {version}",
               f"PRAGMA application_id = {app}")
    writeTestStore(os.path.join(d, 'tests.sqlite'))
    writeStore(os.path.join(d, 'badjson.sqlite'), storePoints(3))
    sqlite(os.path.join(d, 'badjson.sqlite'),
           "UPDATE points SET vals = 'not json' WHERE id = 2")
    writeStore(os.path.join(d, 'odd.sqlite'), [
        ('two\nlines-build-times', {'builder_name': 'two\nlines', 'build_number': '1'},
         {'duration': 3.0}, T0)])
    os.makedirs(os.path.join(d, 'dir', 'sub'))
    os.makedirs(os.path.join(d, 'demo-not'))
    with open(os.path.join(d, 'demo-not', 'mine.txt'), 'w') as f:
        f.write('not a demo\n')
    os.symlink(os.path.join(d, 'nowhere.sqlite'), os.path.join(d, 'dangling.sqlite'))
    os.symlink('loop-b.sqlite', os.path.join(d, 'loop-a.sqlite'))
    os.symlink('loop-a.sqlite', os.path.join(d, 'loop-b.sqlite'))
    os.symlink(store, os.path.join(d, 'link.sqlite'))
    for name, services in MASTERS.items():
        os.makedirs(os.path.join(d, name))
        if services is not None:
            with open(os.path.join(d, name, 'master.cfg'), 'w') as f:
                f.write(masterCfg(services))
    with open(os.path.join(d, 'm-tac', 'buildbot.tac'), 'w') as f:
        f.write("this is not python (\n")


def snapshot(d):
    """Every file under ``d``: its bytes (a link: where it points)."""
    out = {}
    for path in glob.glob(os.path.join(d, '**', '*'), recursive=True) + \
            glob.glob(os.path.join(d, '**', '.*'), recursive=True):
        if os.path.islink(path):
            out[path] = ('link', os.readlink(path))
        elif os.path.isfile(path):
            with open(path, 'rb') as f:
                out[path] = f.read()
    return out


def tracebackFiles():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), 'buildbot-stats-*.traceback.txt')))


# -- the table -------------------------------------------------------------------------------

@dataclass
class Case:
    """``argv`` (``{d}`` is the fixture's directory); the status and words of the one
    line expected; ``hold``: a fixture file held under an exclusive lock during the case."""

    argv: list
    status: int = 2
    says: tuple = ()
    hold: str = None
    writes: bool = False  # a case that succeeds may write its output (new files)
    # rows streamed to standard output before damage met halfway (-o FILE is all or none)
    streams: bool = False
    label: str = field(default='')

    def args(self, d):
        return [a.replace('{d}', d) for a in self.argv]

    def __str__(self):
        return self.label or ' '.join(self.argv)


def case(*argv, status=2, says=(), **kwargs):
    if isinstance(says, str):
        says = (says,)
    return Case(list(argv), status, tuple(says), **kwargs)


STORE_PATHS = [
    # (store argument, what the line says)
    ('{d}/missing.sqlite', '{d}/missing.sqlite: no such file'),
    ('{d}/dir', 'is a directory'),
    ('{d}/notes.txt', 'not an SQLite file'),
    ('{d}/empty.sqlite', 'not an SQLite file'),
    ('{d}/header.sqlite', 'is not a readable SQLite database'),
    ('{d}/truncated.sqlite', 'is not a readable SQLite database'),
    ('{d}/garbage.sqlite', 'database disk image is malformed'),
    ('{d}/state.sqlite', 'not a buildbot_stats store'),
    ('{d}/newer.sqlite', ('schema version 99, newer than', 'upgrade buildbot_stats')),
    ('{d}/foreign.sqlite', 'not a buildbot_stats store'),
    ('{d}/dangling.sqlite', 'no such file'),
    ('{d}/loop-a.sqlite', 'no such file'),
    ('{d}/stats.sqlite/x', 'no such file'),
    ('/proc/nope/stats.sqlite', 'no such file'),
    ('{d}/' + 'x' * 300 + '.sqlite', 'no such file'),
    ('', 'no such file'),
]

BAD_TIMES = [
    # (TIME, what the line says)
    ('yesterday', "bad time for {opt}: 'yesterday'"),
    ('last tuesday', "bad time for {opt}: 'last tuesday'"),
    ('7x', "bad time for {opt}: '7x'"),
    ('1d1h', "bad time for {opt}: '1d1h'"),
    ('nan', "bad time for {opt}: 'nan'"),
    ('inf', "bad time for {opt}: 'inf'"),
    ('1e400', "bad time for {opt}: '1e400'"),
    ('99999999999999', "'99999999999999' is out of range (years 1 to 9999)"),
    ('-99999999999999', "is out of range"),
    ('9999999w', "'9999999w' is out of range"),
    ('2024-13-01', "bad time for {opt}: '2024-13-01'"),
    ('2024-02-30', "bad time for {opt}: '2024-02-30'"),
    ('24:00', "bad time for {opt}: '24:00'"),
    ('', "bad time for {opt}: ''"),
]

REVERSED = [('2d', '3d'), ('2024-05-02', '2024-05-01'), ('1700000001', '1700000000'),
            ('2024-05-01T12:00+02:00', '2024-05-01T09:00')]


def reportCases():
    cases = [case('report', s, '--no-html', says=w) for s, w in STORE_PATHS]
    cases += [
        case('report', '{d}/stats.sqlite', '--no-html', status=0),
        case('report', '{d}/link.sqlite', '--no-html', status=0),
        case('report', '{d}/odd.sqlite', '--no-html', status=0),
        # the default report is next to the store: a missing store is named, not it
        case('report', '/nope/stats.sqlite', says='/nope/stats.sqlite: no such file'),
        case('report', '{d}/badjson.sqlite', '--no-html',
             says=('is damaged: the point of row 2', 'cannot be read')),
        case('report', '{d}/stats.sqlite', '--html', '{d}/dir', says='is a directory'),
        case('report', '{d}/stats.sqlite', '--html', '{d}/no/such/r.html',
             says='no such directory'),
        case('report', '{d}/stats.sqlite', '--html', '{d}/notes.txt/r.html',
             says='not a directory'),
        case('report', '{d}/stats.sqlite', '--html', '{d}/stats.sqlite', says='is the store'),
        case('report', '{d}/stats.sqlite', '--html', '{d}/link.sqlite', says='is the store'),
        case('report', '{d}/stats.sqlite', '--html', '{d}/stats.sqlite-wal',
             says='is the -wal file'),
        case('report', '{d}/stats.sqlite', '--html', '{d}/state.sqlite',
             says='is an SQLite database'),
        case('report', '{d}/stats.sqlite', '--no-html', hold='stats.sqlite',
             says='is locked by another program'),
        case('report', '{d}/stats.sqlite', '--no-html', '--html', '{d}/r.html', status=0),
        case('report', says='give STORE, or --influxdb URL --db NAME'),
        case('report', '--influxdb', 'http://127.0.0.1:9', '--db', 'x', '--no-html',
             says=('http://127.0.0.1:9 db x: cannot be read', 'refused')),
        case('report', '{d}/stats.sqlite', '--influxdb', 'http://127.0.0.1:9', '--db', 'x',
             says='give STORE or --influxdb URL --db NAME, not both'),
        case('report', '{d}/stats.sqlite', '--db', 'x', says='--db and --user go with --influxdb'),
        case('report', '{d}/stats.sqlite', 'extra', says='unrecognized arguments: extra'),
        case('report', '{d}/stats.sqlite', '--html', says='expected one argument'),
    ]
    return cases


def exportCases():
    cases = [case('export', s, says=w) for s, w in STORE_PATHS]
    for since, until in (('--since', '--until'), ('--start', '--end')):
        for t, words in BAD_TIMES[:8]:
            cases.append(case('export', '{d}/stats.sqlite', since, t,
                              says=words.replace('{opt}', since)))
        for lo, hi in REVERSED[:2]:
            cases.append(case('export', '{d}/stats.sqlite', since, lo, until, hi,
                              says=f"bad time range: {since} {lo} ("))
    for t, words in BAD_TIMES[8:]:
        cases.append(case('export', '{d}/stats.sqlite', '--end', t,
                          says=words.replace('{opt}', '--end')))
    cases += [
        case('export', '{d}/stats.sqlite', '--since', '2023-11-14', '--until', '2d', status=0,
             label='export, a good range'),
        case('export', '{d}/stats.sqlite', '--since', '30m', status=0),
        case('export', '{d}/stats.sqlite', '-s', 'gamma-*',
             says=("unknown series 'gamma-*'", 'alpha-build-times')),
        case('export', '{d}/stats.sqlite', '-s', '', says="unknown series ''"),
        case('export', '{d}/stats.sqlite', '-s', 'bad\nname\x1b[2J',
             says="unknown series 'bad\\nname\\x1b[2J'"),
        case('export', '{d}/odd.sqlite', '-s', 'none', says='two\\nlines-build-times'),
        case('export', '{d}/stats.sqlite', '-f', 'xml', says="invalid choice: 'xml'"),
        case('export', '{d}/stats.sqlite', '-f', '', says="invalid choice: ''"),
        case('export', '{d}/badjson.sqlite', says='is damaged: the point of row 2',
             streams=True),
        case('export', '{d}/badjson.sqlite', '-o', '{d}/old.csv', says='is damaged'),
        case('export', '{d}/stats.sqlite', '-o', '{d}/stats.sqlite', says='is the store'),
        case('export', '{d}/stats.sqlite', '-o', '{d}/stats.sqlite-shm',
             says='is the -shm file'),
        case('export', '{d}/stats.sqlite', '-o', '{d}/dir', says='is a directory'),
        case('export', '{d}/stats.sqlite', '-o', '{d}/state.sqlite',
             says='is an SQLite database'),
        case('export', '{d}/stats.sqlite', '-o', '/proc/nope/x.csv', says='no such directory'),
        case('export', '{d}/stats.sqlite', '-o', '{d}/new.csv', status=0, writes=True),
        case('export', '{d}/stats.sqlite', hold='stats.sqlite',
             says='is locked by another program'),
        case('export', '{d}/stats.sqlite', '--since', says='expected one argument'),
    ]
    return cases


def backfillCases():
    cases = []
    for t, words in BAD_TIMES[:10]:
        cases.append(case('backfill', '{d}/m-good', '--since', t,
                          says=words.replace('{opt}', '--since')))
    for lo, hi in REVERSED:
        cases.append(case('backfill', '{d}/m-good', '--start', lo, '--end', hi,
                          says=f"bad time range: --start {lo} ("))
    cases += [
        case('backfill', '{d}/nope', says='is not a directory'),
        case('backfill', '{d}/notes.txt', says='is not a directory'),
        case('backfill', '{d}/m-empty', says='no master.cfg in'),
        case('backfill', '{d}/m-syntax', says="SyntaxError: '(' was never closed"),
        case('backfill', '{d}/m-name', says="name 'undefined_name' is not defined"),
        case('backfill', '{d}/m-config', says="report_in must be one of 'seconds'"),
        case('backfill', '{d}/m-keyword',
             says="unknown argument reportin= (did you mean report_in=?)"),
        case('backfill', '{d}/m-alone', says="c['services'] must be a list of services"),
        case('backfill', '{d}/m-none', says="no StatsService in c['services']"),
        case('backfill', '{d}/m-two', says="several StatsServices ('StatsService', 'other')"),
        case('backfill', '{d}/m-tac', says='cannot read', label='backfill, a broken tac'),
        case('backfill', says='the following arguments are required: MASTER_DIR'),
        case('backfill', '{d}/m-good', '--builder', says='expected one argument'),
    ]
    return cases


def demoCases():
    return [
        case('demo', '--builds', '0', says="'0' must be at least 1"),
        case('demo', '--builds', '-3', says="'-3' must be at least 1"),
        case('demo', '--builds', 'ten', says="'ten' is not a whole number"),
        case('demo', '--timeout', '0', says="'0' must be at least 1"),
        case('demo', '--dir', '{d}/notes.txt', says='is a file'),
        case('demo', '--dir', '{d}/demo-not', says='exists and is not a previous demo'),
        case('demo', '--dir', '{d}/notes.txt/x', says='cannot create it'),
        case('demo', '--dir', '/proc/nope', says='cannot create it'),
    ]


def testsCases():
    cases = [case('tests', s, says=w) for s, w in STORE_PATHS]
    for t, words in BAD_TIMES[:8]:
        cases.append(case('tests', '{d}/tests.sqlite', '--since', t,
                          says=words.replace('{opt}', '--since')))
    for t, words in BAD_TIMES[8:]:
        cases.append(case('tests', '{d}/tests.sqlite', '--end', t,
                          says=words.replace('{opt}', '--end')))
    for lo, hi in REVERSED[:2]:
        cases.append(case('tests', '{d}/tests.sqlite', '--start', lo, '--until', hi,
                          says=f"bad time range: --start {lo} ("))
    cases += [
        case('tests', '{d}/tests.sqlite', status=0),
        case('tests', '{d}/tests.sqlite', '--flaky', '-f', 'json', status=0),
        case('tests', '{d}/tests.sqlite', '--since', '2023-11-14', '--until', '2d', status=0,
             label='tests, a good range'),
        case('tests', '{d}/tests.sqlite', '--history', 'odd\nname\x1b[2J', '-b', 'alpha',
             status=0, label='tests, the history of a test with a line break in its name'),
        case('tests', '{d}/tests.sqlite', '--history', 'no.such.test', '-b', 'nope',
             status=0),
        # no per-test history: says so, reads no point (a damaged one neither)
        case('tests', '{d}/stats.sqlite', status=0),
        case('tests', '{d}/badjson.sqlite', '--slowest', status=0),
        case('tests', '{d}/odd.sqlite', status=0),
        case('tests', '{d}/tests.sqlite', '--history', 'pkg.test_00001',
             says='--history needs --builder'),
        case('tests', '{d}/tests.sqlite', '--limit', '0', says='--limit must be at least 1'),
        case('tests', '{d}/tests.sqlite', '-n', '-5', says='--limit must be at least 1'),
        case('tests', '{d}/tests.sqlite', '--limit', 'ten', says="invalid int value: 'ten'"),
        case('tests', '{d}/tests.sqlite', '--flaky', '--slowest',
             says='not allowed with argument'),
        case('tests', '{d}/tests.sqlite', '--history', 'x', '--failing',
             says='not allowed with argument'),
        case('tests', '{d}/tests.sqlite', '-f', 'xml', says="invalid choice: 'xml'"),
        case('tests', '{d}/tests.sqlite', hold='tests.sqlite',
             says='is locked by another program'),
        case('tests', '{d}/tests.sqlite', '--builder', says='expected one argument'),
        case('tests', says='the following arguments are required: STORE'),
        case('tests', '{d}/tests.sqlite', 'extra', says='unrecognized arguments: extra'),
    ]
    return cases


def pruneCases():
    cases = [case('prune', s, '--older-than', '90d', says=w) for s, w in STORE_PATHS]
    cases += [
        # a dry run reads only: nothing written, no -wal or -shm beside the store
        case('prune', '{d}/stats.sqlite', '--older-than', '1d', '--dry-run', status=0),
        case('prune', '{d}/link.sqlite', '--older-than', '1d', '--rollups-older-than', '30d',
             '--dry-run', status=0),
        case('prune', '{d}/badjson.sqlite', '--older-than', '1d', '--dry-run', status=0,
             label='prune --dry-run counts a store with a damaged point'),
        case('prune', '{d}/stats.sqlite', '--older-than', '90d', '--busy-timeout', '0.3',
             hold='stats.sqlite', says='is locked by another program'),
        case('prune', '{d}/stats.sqlite', '--older-than', 'soon',
             says="bad age for --older-than: 'soon'"),
        case('prune', '{d}/stats.sqlite', '--older-than', '0d',
             says="bad age for --older-than: '0d'"),
        case('prune', '{d}/stats.sqlite', '--older-than', '',
             says="bad age for --older-than: ''"),
        case('prune', '{d}/stats.sqlite', '--older-than', '90d', '--rollups-older-than', '1d',
             says='--rollups-older-than must be at least --older-than'),
        case('prune', '{d}/stats.sqlite', '--older-than', '90d', '--busy-timeout', '-1',
             says="'-1' must be a positive number of seconds"),
        case('prune', '{d}/stats.sqlite', says='the following arguments are required: '
             '--older-than'),
        case('prune', says='the following arguments are required: STORE, --older-than'),
    ]
    return cases


def compactCases():
    cases = [case('compact', s, says=w) for s, w in STORE_PATHS[:11]]
    cases += [
        case('compact', '{d}/stats.sqlite', '--busy-timeout', '0.3', hold='stats.sqlite',
             says='is locked by another program'),
        case('compact', '{d}/stats.sqlite', '--busy-timeout', 'nan',
             says="'nan' must be a positive number of seconds"),
        case('compact', '{d}/stats.sqlite', '--busy-timeout', 'soon',
             says="'soon' is not a number of seconds"),
        case('compact', '{d}/stats.sqlite', 'extra', says='unrecognized arguments: extra'),
        case('compact', says='the following arguments are required: STORE'),
    ]
    return cases


def regressionsCases():
    cases = [case('regressions', s, says=w) for s, w in STORE_PATHS]
    for t, words in BAD_TIMES[:10]:
        cases.append(case('regressions', '{d}/stats.sqlite', '--since', t,
                          says=words.replace('{opt}', '--since')))
    cases += [
        # no change in 6 builds: exit 0 (1 is for a slowdown: tests.test_regressions_cli)
        case('regressions', '{d}/stats.sqlite', status=0),
        case('regressions', '{d}/stats.sqlite', '--since', '30m', '-f', 'json', status=0),
        case('regressions', '{d}/link.sqlite', status=0),
        case('regressions', '{d}/odd.sqlite', status=0),
        case('regressions', '{d}/badjson.sqlite',
             says=('badjson.sqlite', 'is damaged: the point of row 2')),
        case('regressions', '{d}/stats.sqlite', hold='stats.sqlite',
             says='is locked by another program'),
        case('regressions', '{d}/stats.sqlite', '--builder', 'gamma',
             says="unknown builder 'gamma' (the store has: alpha)"),
        case('regressions', '{d}/stats.sqlite', '--builder', 'bad\nname\x1b[2J',
             says="unknown builder 'bad\\nname\\x1b[2J'"),
        case('regressions', '{d}/stats.sqlite', '--series', 'gamma-*',
             says="no series matches 'gamma-*' (the store has: coverage.percent, duration)"),
        case('regressions', '{d}/stats.sqlite', '--series', '', says="no series matches ''"),
        case('regressions', '{d}/stats.sqlite', '-f', 'xml', says="invalid choice: 'xml'"),
        case('regressions', '{d}/stats.sqlite', '--min-size', '0',
             says="--min-size must be a percentage above 0, got 0"),
        case('regressions', '{d}/stats.sqlite', '--min-size', 'nan',
             says="--min-size must be a percentage above 0, got nan"),
        case('regressions', '{d}/stats.sqlite', '--min-size', 'ten',
             says="invalid float value: 'ten'"),
        case('regressions', '{d}/stats.sqlite', '--higher-is-better', '',
             says="--higher-is-better needs a series name or pattern"),
        # InfluxDB: the URL's mistakes, never its password shown; a server not there
        case('regressions', 'http://127.0.0.1:1/', says='names its database as its path'),
        case('regressions', 'http://127.0.0.1:1/a/b', says='names its database as its path'),
        case('regressions', f'http://admin:{PASSWORD}@127.0.0.1:1/',
             says='give the InfluxDB credentials in $INFLUX_USERNAME'),
        case('regressions', 'https://[::1/db', says='the InfluxDB URL is not valid'),
        case('regressions', f'http://u:{PASSWORD}@127.0.0.1:99999/db',
             says='the InfluxDB URL is not valid (Port out of range'),
        case('regressions', 'http://127.0.0.1:1/db', says=('127.0.0.1:1', 'cannot be read')),
        case('regressions', says='the following arguments are required: STORE'),
        case('regressions', '{d}/stats.sqlite', '--since', says='expected one argument'),
    ]
    return cases


def rebuildRollupsCases():
    cases = [case('rebuild-rollups', s, says=w) for s, w in STORE_PATHS[:11]]
    for option in ('--since', '--start'):
        for t, words in BAD_TIMES[:4] + BAD_TIMES[7:8]:
            cases.append(case('rebuild-rollups', '{d}/stats.sqlite', option, t,
                              says=words.replace('{opt}', option)))
    cases += [
        case('rebuild-rollups', '{d}/stats.sqlite', '--busy-timeout', '0.3',
             hold='stats.sqlite', says='is locked by another program'),
        case('rebuild-rollups', says='the following arguments are required: STORE'),
    ]
    return cases


def influxdbRollupsCases():
    # no server is needed to be refused; one that cannot be reached is named
    db = ['--db', 'buildbot']
    return [
        case('influxdb-rollups', says='the following arguments are required: --influxdb, '
             '--db'),
        case('influxdb-rollups', '--influxdb', 'http://127.0.0.1:9',
             says='the following arguments are required: --db'),
        case('influxdb-rollups', '--influxdb', 'localhost:8086', *db,
             says="url must be an http:// or https:// URL, got 'localhost:8086'"),
        case('influxdb-rollups', '--influxdb', 'http://127.0.0.1:9', '--db', '',
             says="--influxdb needs --db NAME"),
        case('influxdb-rollups', '--influxdb', 'http://127.0.0.1:9', *db,
             says=('http://127.0.0.1:9 db buildbot: cannot be read', 'refused')),
        case('influxdb-rollups', '--influxdb', 'http://127.0.0.1:9', *db, '--since', '2d',
             says='--since goes with --backfill'),
        case('influxdb-rollups', '--influxdb', 'http://127.0.0.1:9', *db, '--backfill',
             '--start', 'yesterday', says="bad time for --start: 'yesterday'"),
        case('influxdb-rollups', '--influxdb', 'http://127.0.0.1:9', *db, '--backfill',
             '--since', '99999999999999', says='is out of range'),
        # --print runs nothing: no server needed
        case('influxdb-rollups', '--influxdb', 'http://127.0.0.1:9', *db, '--backfill',
             '--since', '2d', '--print', status=0),
    ]


def usageCases():
    return [
        case(says='the following arguments are required: COMMAND'),
        case('frobnicate', says="invalid choice: 'frobnicate'"),
        case('--version', status=0),
        case('report', '--help', status=0),
        case('--nope', says='the following arguments are required: COMMAND'),
    ]


#: Every case of the table, by command (a new command adds a function of its own).
CASES = (reportCases() + exportCases() + backfillCases() + demoCases() + testsCases()
         + regressionsCases() + pruneCases() + compactCases() + rebuildRollupsCases() + influxdbRollupsCases()
         + usageCases())


@contextlib.contextmanager
def exclusiveLock(path):
    """``path`` held by another program's exclusive lock."""
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("COMMIT")  # the lock stays: exclusive locking mode
        yield
    finally:
        holder.close()


@contextlib.contextmanager
def writeInProgress(path):
    """``path`` with another program's write transaction open (readers go on, in WAL mode;
    a writer waits)."""
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


class Table(unittest.TestCase):
    timeout = 300

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        buildFixture(self.dir)

    def run1(self, c):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            if c.hold:
                with exclusiveLock(os.path.join(self.dir, c.hold)):
                    status = cli_main.main(c.args(self.dir), out=out)
            else:
                status = cli_main.main(c.args(self.dir), out=out)
        return status, out.getvalue(), err.getvalue()

    def test_every_command_has_cases(self):
        commands = set(cli_main.makeParser()._subparsers._group_actions[0].choices)
        self.assertEqual(commands - {c.argv[0] for c in CASES if c.argv}, set())
        self.assertEqual(commands - {c.command for c in SIGNAL_CASES}, set())
        self.assertGreaterEqual(len(CASES), 100)

    def test_the_table(self):
        before = snapshot(self.dir)
        seen = set(before)  # the fixture, and the outputs of the cases that succeeded
        tracebacks = tracebackFiles()
        for c in CASES:
            status, out, err = self.run1(c)
            self.flushLoggedErrors()  # a master.cfg that raises is logged by Buildbot
            what = f"{c}: status {status}, stdout {out[-300:]!r}, stderr {err!r}"
            self.assertEqual(status, c.status, what)
            self.assertNotIn('Traceback', out + err, what)
            self.assertNotIn(PASSWORD, out + err, what)
            if c.status == 2:
                lines = err.splitlines()
                self.assertEqual(len(lines), 1, what)
                self.assertTrue(lines[0].startswith('buildbot-stats'), what)
                for words in c.says:
                    self.assertIn(words.replace('{d}', self.dir), lines[0], what)
                if not c.streams:
                    self.assertEqual(out, '', what)
            now = snapshot(self.dir)
            changed = sorted(p for p in before if now.get(p) != before[p])
            self.assertEqual(changed, [], what)
            added = sorted(set(now) - seen)
            if c.writes:
                added = [p for p in added if not p.endswith('.csv')]
            # a report of status 0 writes its HTML only where asked (--html r.html)
            added = [p for p in added if not p.endswith('/r.html')]
            self.assertEqual(added, [], what)
            seen |= set(now)
            self.assertEqual(glob.glob(os.path.join(self.dir, '**', '*' + TEMP_SUFFIX),
                                       recursive=True), [], what)
        self.assertEqual(tracebackFiles() - tracebacks, set())


# -- what needs Buildbot's database behind it: a reactor, a process of its own -------------------

def buildbotDatabase(basedir):
    """Buildbot's database for the master.cfg in ``basedir``, as upgrade-master makes it
    (on the test's reactor); a Deferred."""
    from buildbot_stats.cli.demo import upgradeDb

    return defer.ensureDeferred(upgradeDb(basedir))


def runCommand(*args, env=None, cwd=None):
    result = subprocess.run(command() + list(args), capture_output=True, text=True,
                            timeout=120, env=env, cwd=cwd)
    return result.returncode, result.stdout, result.stderr


class WithADatabase(unittest.TestCase):
    """backfill's mistakes found once Buildbot's database is opened (a missing database,
    one in memory, one that cannot be reached, an unknown builder: tests.test_history)."""

    timeout = 300

    def assertOneLine(self, status, out, err, *words):
        self.assertEqual(status, 2, err)
        self.assertEqual(out, '')
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertNotIn('Traceback', err)
        self.assertNotIn(PASSWORD, err)
        for w in words:
            self.assertIn(w, err)

    @defer.inlineCallbacks
    def test_a_database_of_another_buildbot_version(self):
        good = os.path.abspath(self.mktemp())
        os.makedirs(good)
        with open(os.path.join(good, 'master.cfg'), 'w') as f:
            f.write(masterCfg("c['services'] = [stats.StatsService()]\n"))
        yield buildbotDatabase(good)
        state = os.path.join(good, 'state.sqlite')
        # a database of a newer Buildbot than the one beside buildbot-stats: not one to
        # upgrade (the message once said to run upgrade-master)
        sqlite(state, "UPDATE alembic_version SET version_num = 'ffffffffffff'")
        status, out, err = runCommand('backfill', good)
        self.assertOneLine(status, out, err, "is at a newer schema version (ffffffffffff) "
                           "than this Buildbot", "install that version where buildbot-stats "
                           "runs")
        self.assertNotIn('upgrade-master', err)
        sqlite(state, "UPDATE alembic_version SET version_num = '066'")
        self.assertOneLine(*runCommand('backfill', good),
                           "at an older schema version", "run 'buildbot upgrade-master'")
        self.assertFalse(os.path.exists(os.path.join(good, 'stats.sqlite')))


# -- signals ---------------------------------------------------------------------------------------

@dataclass
class SignalCase:
    command: str
    signum: int
    # what the test waits for before it sends the signal, then the checks
    label: str


SIGNAL_CASES = [
    SignalCase('report', signal.SIGINT, "report of a large store, once it is open"),
    SignalCase('export', signal.SIGTERM, "export to a file, once its temporary file exists"),
    SignalCase('export', signal.SIGINT, "export to a pipe, once rows arrive"),
    SignalCase('backfill', signal.SIGINT, "backfill waiting for a locked database"),
    SignalCase('backfill', signal.SIGTERM, "backfill waiting for a locked database"),
    SignalCase('tests', signal.SIGINT, "tests, its tables flowing to a full pipe"),
    SignalCase('regressions', signal.SIGINT, "regressions of a large store, once it is open"),
    SignalCase('prune', signal.SIGINT, "prune waiting for a store another program locks"),
    SignalCase('compact', signal.SIGTERM, "compact waiting for a store another program locks"),
    SignalCase('rebuild-rollups', signal.SIGINT,
               "rebuild-rollups waiting for a store another program locks"),
    SignalCase('influxdb-rollups', signal.SIGINT, "influxdb-rollups waiting for a server "
               "that does not answer"),
    # one demo run is enough: tests.test_cli_safety.DemoInterrupted (./run-demo, SIGINT)
    SignalCase('demo', signal.SIGINT, "./run-demo, once a build ended"),
]
#: seconds from the signal to the end of the process: the bound is cli.interrupt.GRACE
#: (0.8 s; benchmarks/interrupt.py measures it); this one only tells an end from a hang
#: (24 s, 60 s before) on a loaded machine
ENDS_WITHIN = 10.0


def openFiles(pid):
    out = []
    for fd in glob.glob(f'/proc/{pid}/fd/*'):
        with contextlib.suppress(OSError):
            out.append(os.readlink(fd))
    return out


def waitFor(proc, condition, what, deadline=120.0):
    """Poll ``condition()`` (a process's state: no event to wait on) every 20 ms."""
    end = time.monotonic() + deadline
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the command ended (status {proc.returncode}) before "
                                 f"{what}: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > end:
            raise AssertionError(f"not seen within {deadline} s: {what}")
        time.sleep(0.02)


class Signals(unittest.TestCase):
    """Ctrl-C and SIGTERM end every command within a second, its store sound and the same,
    its output as it was, no file left (the table of :data:`SIGNAL_CASES`)."""

    timeout = 300

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def bigStore(self):
        path = os.path.join(self.dir, 'big.sqlite')
        points = [(f"s{i % 4}", {'builder_name': 'alpha', 'build_number': str(i)},
                   {'v': float(i), 'text': 'x' * 40}, T0 + i) for i in range(150_000)]
        writeStore(path, points)
        return path

    def start(self, *args, script=None, **kwargs):
        proc = subprocess.Popen((script or command()) + list(args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kwargs)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc

    def interrupt(self, proc, signum):
        """Send ``signum``; ``(status, stdout, stderr, seconds to the end)``."""
        proc.send_signal(signum)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err.decode(), time.monotonic() - sent

    def assertInterrupted(self, result, signum, command):
        status, _, err, took = result
        self.assertEqual(status, {signal.SIGINT: 130, signal.SIGTERM: 143}[signum], err)
        self.assertEqual(err.splitlines()[-1], f"buildbot-stats {command}: interrupted", err)
        self.assertNotIn('Traceback', err)
        self.assertLess(took, ENDS_WITHIN)

    def assertSound(self, store, before):
        with open(store, 'rb') as f:
            self.assertEqual(f.read(), before)
        self.assertFalse(os.path.exists(store + '-wal'))
        # immutable: mode=ro alone would make a -wal and a -shm (what the commands avoid)
        conn = sqlite3.connect(f'file:{store}?mode=ro&immutable=1', uri=True)
        self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone(), ('ok',))
        conn.close()

    def test_read_commands(self):
        store = self.bigStore()
        with open(store, 'rb') as f:
            before = f.read()
        # report: once it has the store open, reading it
        proc = self.start('report', store, '--html', os.path.join(self.dir, 'r.html'))
        waitFor(proc, lambda: store in openFiles(proc.pid), "the store is open")
        self.assertInterrupted(self.interrupt(proc, signal.SIGINT), signal.SIGINT, 'report')
        self.assertFalse(os.path.exists(os.path.join(self.dir, 'r.html')))
        # export to a file: the old one stays, the temporary one goes
        old = os.path.join(self.dir, 'old.csv')
        with open(old, 'w') as f:
            f.write('the export of last week\n')
        proc = self.start('export', store, '-o', old)
        waitFor(proc, lambda: glob.glob(os.path.join(self.dir, '.*' + TEMP_SUFFIX)),
                "the temporary file")
        self.assertInterrupted(self.interrupt(proc, signal.SIGTERM), signal.SIGTERM, 'export')
        with open(old) as f:
            self.assertEqual(f.read(), 'the export of last week\n')
        self.assertEqual(glob.glob(os.path.join(self.dir, '.*' + TEMP_SUFFIX)), [])
        # export to a pipe: once rows arrive
        proc = self.start('export', store)
        first = proc.stdout.readline()
        self.assertTrue(first.startswith(b'time,timestamp,series'), first)
        self.assertInterrupted(self.interrupt(proc, signal.SIGINT), signal.SIGINT, 'export')
        # regressions: once it has the store open, reading (or analysing) it
        proc = self.start('regressions', store)
        waitFor(proc, lambda: store in openFiles(proc.pid), "the store is open")
        self.assertInterrupted(self.interrupt(proc, signal.SIGINT), signal.SIGINT,
                               'regressions')
        self.assertSound(store, before)
        self.assertEqual(sorted(os.listdir(self.dir)), ['big.sqlite', 'old.csv'])

    def test_tests_writing_to_a_full_pipe(self):
        # 3,000 flaky tests: some 400 kB of tables, more than a pipe holds, so the command
        # is still writing when the signal comes
        store = os.path.join(self.dir, 'tests.sqlite')
        writeTestStore(store, builds=6, tests=3000, prefix='pkg.module.TestClass.test_')
        with open(store, 'rb') as f:
            before = f.read()
        proc = self.start('tests', store, '--flaky', '--limit', '5000')
        first = proc.stdout.readline()
        self.assertEqual(first, b'6 builds with test results (alpha).\n')
        self.assertInterrupted(self.interrupt(proc, signal.SIGINT), signal.SIGINT, 'tests')
        self.assertSound(store, before)
        self.assertEqual(sorted(os.listdir(self.dir)), ['tests.sqlite'])

    def test_store_commands_waiting_for_a_lock(self):
        store = os.path.join(self.dir, 'stats.sqlite')
        writeStore(store, storePoints())
        with open(store, 'rb') as f:
            before = f.read()
        for args, signum in ((['prune', store, '--older-than', '1d'], signal.SIGINT),
                             (['compact', store], signal.SIGTERM),
                             (['rebuild-rollups', store], signal.SIGINT)):
            with writeInProgress(store):
                # each waits for the write to end (10 s and more): the signal ends it at once
                proc = self.start(*args)
                waitFor(proc, lambda: store in openFiles(proc.pid), "the store is open")
                self.assertInterrupted(self.interrupt(proc, signum), signum, args[0])
            self.assertSound(store, before)
        self.assertEqual(sorted(os.listdir(self.dir)), ['stats.sqlite'])

    def test_influxdb_rollups_waiting_for_a_server(self):
        import socket

        server = socket.socket()
        self.addCleanup(server.close)
        server.bind(('127.0.0.1', 0))
        server.listen(1)  # accepts the connection, never answers
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        proc = self.start('influxdb-rollups', '--influxdb', url, '--db', 'buildbot')
        conn, _ = server.accept()
        self.addCleanup(conn.close)
        self.assertInterrupted(self.interrupt(proc, signal.SIGINT), signal.SIGINT,
                               'influxdb-rollups')

    @defer.inlineCallbacks
    def test_backfill_waiting_for_a_locked_database(self):
        basedir = os.path.join(self.dir, 'master')
        os.makedirs(basedir)
        with open(os.path.join(basedir, 'master.cfg'), 'w') as f:
            f.write(masterCfg("c['services'] = [stats.StatsService()]\n"))
        yield buildbotDatabase(basedir)
        state = os.path.join(basedir, 'state.sqlite')
        for signum in (signal.SIGINT, signal.SIGTERM):
            with exclusiveLock(state):
                proc = self.start('backfill', basedir)
                # it says what it waits for, within a second or two of opening it (it once
                # said nothing, and ended only when the lock went)
                notice = proc.stderr.readline().decode()
                self.assertEqual(notice, "buildbot-stats backfill: waiting for the master's "
                                 f"database {state}: locked by another program; Buildbot "
                                 "retries until it answers (Ctrl-C to stop)\n")
                self.assertInterrupted(self.interrupt(proc, signum), signum, 'backfill')
            conn = sqlite3.connect(state)
            self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone(), ('ok',))
            conn.close()
            store = os.path.join(basedir, 'stats.sqlite')
            self.assertFalse(os.path.exists(store) and os.path.getsize(store) and
                             sqlite3.connect(store).execute(
                                 "SELECT COUNT(*) FROM points").fetchone()[0])


class AnotherUser(unittest.TestCase):
    """A store in a place this user may not write: a backup, a read-only mount, a master's
    directory read by another user. Tests run as root, who may write anywhere: the command
    runs without the capabilities that let root ignore permissions (CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH, CAP_FOWNER), in a directory owned by another user, so it is that
    other user here."""

    timeout = 120

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("not root: the test's own user stands for the other one")
        import pwd

        try:
            self.nobody = pwd.getpwnam('nobody')
        except KeyError:
            self.skipTest("no user 'nobody'")

    def runAsAnother(self, *args):
        def dropCapabilities():
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
                if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                    raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP)')

        result = subprocess.run(command() + list(args), capture_output=True, text=True,
                                timeout=120, preexec_fn=dropCapabilities)
        return result.returncode, result.stdout, result.stderr

    def test_a_store_in_a_read_only_place_is_read_and_nothing_is_written_beside_it(self):
        base = os.path.abspath(self.mktemp())
        ro = os.path.join(base, 'ro')
        os.makedirs(ro)
        store = os.path.join(ro, 'stats.sqlite')
        writeStore(store, storePoints())
        with open(store, 'rb') as f:
            data = f.read()
        damaged = os.path.join(ro, 'damaged.sqlite')
        with open(damaged, 'wb') as f:
            f.write(data[:3000])
        for path in (ro, store, damaged):
            os.chown(path, self.nobody.pw_uid, self.nobody.pw_gid)
        os.chmod(ro, 0o755)
        os.chmod(store, 0o644)
        # the other user may not write there: the check is real
        status, _, err = self.runAsAnother('export', store, '-o', os.path.join(ro, 'x.csv'))
        self.assertEqual(status, 2, err)
        self.assertIn(f"--output {ro}/x.csv: cannot write it: {ro}: permission denied", err)

        status, out, err = self.runAsAnother('report', store, '--no-html')
        self.assertEqual(status, 0, err)  # was "attempt to write a readonly database"
        self.assertRegex(out, r"\nalpha +6 +12\.50s +15\.00s")
        status, out, err = self.runAsAnother('export', store)
        self.assertEqual(status, 0, err)
        self.assertEqual(len(out.splitlines()), 13)
        status, out, err = self.runAsAnother('regressions', store)
        self.assertEqual(status, 0, err)
        self.assertEqual(out, "0 changes in 2 series (0 for the worse), newest first.\n")
        status, out, err = self.runAsAnother('report', store)
        self.assertEqual(status, 2)
        self.assertEqual(err, f"buildbot-stats report: error: --html {ro}/stats-report.html: "
                         f"cannot write it: {ro}: permission denied; give --html FILE "
                         "elsewhere, or --no-html\n")
        status, out, err = self.runAsAnother('prune', store, '--older-than', '1h', '--dry-run')
        self.assertEqual(status, 0, err)
        self.assertIn("would delete 12 raw points older than", out)
        for command in (['compact'], ['prune', '--older-than', '1h'], ['rebuild-rollups']):
            status, out, err = self.runAsAnother(command[0], store, *command[1:])
            self.assertEqual(status, 2, err)
            self.assertEqual(err, f"buildbot-stats {command[0]}: error: {store}: cannot change "
                             "it: permission denied (the store and its directory must be "
                             "writable: run it as the user that runs the master)\n")
        status, out, err = self.runAsAnother('report', damaged, '--no-html')
        self.assertEqual(status, 2)
        self.assertIn('is not a readable SQLite database', err)
        # nothing beside either (a damaged store once left its -wal and -shm)
        self.assertEqual(sorted(os.listdir(ro)), ['damaged.sqlite', 'stats.sqlite'])
        with open(store, 'rb') as f:
            self.assertEqual(f.read(), data)

    def test_a_store_being_written_is_read_with_its_log(self):
        # the master (its user) has the store open: the -wal holds what it wrote last
        base = os.path.abspath(self.mktemp())
        ro = os.path.join(base, 'ro')
        os.makedirs(ro)
        store = os.path.join(ro, 'stats.sqlite')
        writeStore(store, storePoints())
        writer = StoreWriter(busy_timeout=5.0)
        self.addCleanup(writer.close)
        writer.conn = None
        writer.open(store).execute("PRAGMA wal_autocheckpoint = 0")
        writer.write(store, [encodeRow('late-series', {}, {'v': 1.0}, T0 + 999)])
        self.assertTrue(os.path.exists(store + '-wal'))
        for name in os.listdir(ro):
            os.chown(os.path.join(ro, name), self.nobody.pw_uid, self.nobody.pw_gid)
        os.chown(ro, self.nobody.pw_uid, self.nobody.pw_gid)
        status, out, err = self.runAsAnother('export', store, '-s', 'late-series')
        self.assertEqual(status, 0, err)
        self.assertIn('late-series', out)


class WaitingNotice(unittest.TestCase):
    """backfill's notice that Buildbot's database makes it wait: from the pool's retries
    only, once per 30 s."""

    def test_notice(self):
        from twisted.python.failure import Failure

        from buildbot_stats.cli.backfill import LogKeeper

        err, now = io.StringIO(), [100.0]
        keeper = LogKeeper(err=err, clock=lambda: now[0])
        keeper.database = '/srv/master/state.sqlite'

        def retry(message):
            failure = Failure(sqlite3.OperationalError(message))
            keeper({'log_format': 'retrying <function thd> after sql error {e}',
                    'e': message, 'log_failure': failure})

        # the stats store's own writer, locked: not the master's database
        keeper({'log_format': 'buildbot_stats: SQLiteStorageService: database is locked'})
        self.assertEqual(err.getvalue(), '')
        retry('database is locked')
        retry('database is locked')
        now[0] += 29
        retry('database is locked')
        line = ("buildbot-stats backfill: waiting for the master's database "
                "/srv/master/state.sqlite: locked by another program; Buildbot retries until "
                "it answers (Ctrl-C to stop)\n")
        self.assertEqual(err.getvalue(), line)
        now[0] += 2
        retry('(psycopg2.OperationalError) Lost connection to server')
        self.assertEqual(err.getvalue(), line + line.replace(
            'locked by another program', 'the connection to it was lost'))
