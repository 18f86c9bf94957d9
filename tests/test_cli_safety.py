"""buildbot-stats never destroys a store, never shows a traceback, never leaves half a file.

Each case found by trying the command as a new user would is run through the installed
command (a subprocess); where a store is at stake its bytes are compared before and after.
A hypothesis test then feeds every command random arguments and paths."""

from __future__ import annotations

import collections
import contextlib
import csv
import glob
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.trial import unittest

from buildbot_stats import stats
from buildbot_stats.cli import main as cli_main
from buildbot_stats import charts
from buildbot_stats.cli.safewrite import TEMP_SUFFIX
from buildbot_stats.reading.sqlite import StoreError
from buildbot_stats.reading.sqlite import openStore
from tests.test_cli import T0
from tests.test_cli import StoreTestBase
from tests.test_cli import command
from tests.test_cli import runCli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def snapshot(store):
    """The bytes of a store and of its write-ahead log (absent and empty alike). The -shm
    file is left out: an index of the log that every reader, read-only ones too, may
    create and update."""
    out = {}
    for suffix in ('', '-wal'):
        try:
            with open(store + suffix, 'rb') as f:
                out[suffix] = f.read()
        except FileNotFoundError:
            out[suffix] = b''
    return out


def leftovers(directory):
    """Temporary files of the safe-write path left anywhere under ``directory``."""
    return glob.glob(os.path.join(directory, '**', '*' + TEMP_SUFFIX), recursive=True) + \
        glob.glob(os.path.join(directory, '**', '.*' + TEMP_SUFFIX), recursive=True)


@defer.inlineCallbacks
def makeStoreOf(path, points):
    """A store holding ``points``: ``[(series, fields, tags, time), ...]``."""
    svc = stats.SQLiteStorageService(path)
    yield svc.startService()
    for series, fields, tags, when in points:
        svc.postStatsValue(fields, series, tags, timestamp=when)
    yield svc.stopService()


def damageLastTablePage(path):
    """Overwrite the last table leaf page of ``path`` with garbage: the header, the schema
    and the indexes stay readable; the rows written last are not."""
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(path, 'r+b') as f:
        data = f.read()
        pages = len(data) // page_size
        last = max(n for n in range(1, pages) if data[n * page_size] == 0x0D)
        f.seek(last * page_size)
        f.write(b'\xa5' * page_size)


class SafetyBase(StoreTestBase):
    timeout = 300

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.before = snapshot(self.store)

    def assertStoreUnchanged(self):
        self.assertEqual(snapshot(self.store), self.before)

    def assertOneLineError(self, result, *words, status=2):
        self.assertEqual(result.returncode, status, result.stdout + result.stderr)
        self.assertNotIn('Traceback', result.stderr + result.stdout)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        for w in words:
            self.assertIn(w, lines[0])
        return lines[0]


class DataLoss(SafetyBase):
    def storeNames(self):
        """Every way of naming the store or its side files."""
        link = os.path.join(self.dir, 'link.sqlite')
        os.symlink(self.store, link)
        hard = os.path.join(self.dir, 'hard.sqlite')
        os.link(self.store, hard)
        sub = os.path.join(self.dir, 'sub')
        os.makedirs(sub)
        return [
            (self.store, 'is the store'),
            ('stats.sqlite', 'is the store'),                                  # relative
            ('./stats.sqlite', 'is the store'),
            (os.path.join(sub, '..', 'stats.sqlite'), 'is the store'),
            (os.path.join(self.dir, '.', 'stats.sqlite-wal'), 'is the -wal file'),
            ('stats.sqlite-shm', 'is the -shm file'),
            ('stats.sqlite-journal', 'is the -journal file'),
            (link, 'is the store'),                                            # a symlink
            (hard, 'is the store'),                                            # a hard link
        ]

    def test_an_output_that_is_the_store_is_refused_and_the_store_kept(self):
        for target, words in self.storeNames():
            for args in (['export', self.store, '-o', target],
                         ['export', 'stats.sqlite', '--format', 'line', '--output', target],
                         ['report', self.store, '--html', target],
                         ['report', './stats.sqlite', '--html', target]):
                result = runCli(*args, cwd=self.dir)
                line = self.assertOneLineError(result, words, 'choose another file')
                self.assertIn(target, line)
                self.assertStoreUnchanged()
                self.assertEqual(result.stdout, '')  # refused before the store was read
        self.assertEqual(leftovers(self.dir), [])

    def test_another_database_is_never_an_output(self):
        state = os.path.join(self.dir, 'state.sqlite')  # as Buildbot's own database
        conn = sqlite3.connect(state)
        conn.execute("CREATE TABLE builds (id INTEGER)")
        conn.commit()
        conn.close()
        with open(state, 'rb') as f:
            before = f.read()
        for args in (['export', self.store, '-o', state], ['report', self.store, '--html', state]):
            result = runCli(*args)
            self.assertOneLineError(result, 'state.sqlite: is an SQLite database',
                                    'not overwritten')
            self.assertEqual(result.stdout, '')
        with open(state, 'rb') as f:
            self.assertEqual(f.read(), before)
        self.assertStoreUnchanged()

    def test_default_html_path_next_to_a_store_named_like_a_report(self):
        # a store whose default report name would be itself cannot exist (-report.html is
        # appended), but one named by a symlink to the report file is refused too
        os.symlink(self.store, os.path.join(self.dir, 'stats-report.html'))
        result = runCli('report', self.store)
        self.assertOneLineError(result, 'stats-report.html', 'is the store')
        self.assertStoreUnchanged()

    @defer.inlineCallbacks
    def test_an_export_failing_halfway_leaves_no_file_and_an_old_one_untouched(self):
        big = os.path.join(self.dir, 'big.sqlite')
        points = [(f"b{i % 3}-build-times", {'duration': float(i), 'note': 'x' * 200},
                   {'builder_name': f"b{i % 3}", 'build_number': str(i)}, T0 + i)
                  for i in range(600)]
        yield makeStoreOf(big, points)
        damageLastTablePage(big)
        # the damage is met halfway: the store opens, its series are listed (from an
        # index), the output is begun (a CSV header), then the points cannot be read
        with openStore(big) as reader:
            self.assertEqual(len(reader.series()), 3)
            with self.assertRaises(StoreError):
                list(reader.points())
        damaged = snapshot(big)

        old = os.path.join(self.dir, 'out.csv')
        with open(old, 'w') as f:
            f.write("the export of last week\n")
        os.chmod(old, 0o640)
        for fmt in ('csv', 'jsonl', 'line'):
            result = runCli('export', big, '-f', fmt, '-o', old)
            self.assertOneLineError(result, 'big.sqlite', 'is not a readable SQLite database',
                                    'malformed')
            with open(old) as f:
                self.assertEqual(f.read(), "the export of last week\n")
            new = os.path.join(self.dir, f'new.{fmt}')
            result = runCli('export', big, '-f', fmt, '-o', new)
            self.assertOneLineError(result, 'malformed')
            self.assertFalse(os.path.exists(new))
        result = runCli('report', big, '--html', os.path.join(self.dir, 'r.html'))
        self.assertOneLineError(result, 'malformed')
        self.assertFalse(os.path.exists(os.path.join(self.dir, 'r.html')))
        self.assertEqual(snapshot(big), damaged)
        self.assertEqual(leftovers(self.dir), [])

    def test_a_good_export_replaces_the_file_whole_keeping_its_mode_and_link(self):
        old = os.path.join(self.dir, 'out.csv')
        with open(old, 'w') as f:
            f.write("old\n" * 10000)
        os.chmod(old, 0o640)
        link = os.path.join(self.dir, 'latest.csv')
        os.symlink(old, link)
        result = runCli('export', self.store, '-o', link)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, f"exported 22 points of 4 series to {link}\n")
        with open(old) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), 32)  # one row per field
        self.assertEqual(os.stat(old).st_mode & 0o777, 0o640)
        self.assertTrue(os.path.islink(link))
        self.assertStoreUnchanged()
        self.assertEqual(leftovers(self.dir), [])

    def test_html_to_a_directory_or_nowhere(self):
        out = os.path.join(self.dir, 'reports')
        os.makedirs(out)
        result = runCli('report', self.store, '--html', out)
        self.assertOneLineError(result, f"--html {out}: is a directory")
        self.assertEqual(os.listdir(out), [])
        self.assertFalse(os.path.exists(out + '.tmp'))
        for target, words in [
            (os.path.join(self.dir, 'no', 'such', 'r.html'), 'no such directory'),
            (os.path.join(self.store, 'r.html'), 'not a directory'),
            ('/proc/x/r.html', 'no such directory'),
        ]:
            self.assertOneLineError(runCli('report', self.store, '--html', target), words)
            self.assertOneLineError(runCli('export', self.store, '-o', target), words)
        self.assertStoreUnchanged()
        self.assertEqual(set(os.listdir(self.dir)) - {'stats.sqlite-wal', 'stats.sqlite-shm'},
                         {'reports', 'stats.sqlite'})


class OneLineErrors(SafetyBase):
    def test_damage_after_the_header(self):
        damaged = os.path.join(self.dir, 'damaged.sqlite')
        with open(self.store, 'rb') as f:
            data = f.read()
        with open(damaged, 'wb') as f:
            f.write(data[:4096] + b'\xa5' * (len(data) - 4096))
        for args in (['report', damaged, '--no-html'], ['report', damaged],
                     ['export', damaged], ['export', damaged, '-f', 'line', '-s', 'alpha-*']):
            self.assertOneLineError(runCli(*args), 'damaged.sqlite',
                                    'is not a readable SQLite database',
                                    'database disk image is malformed')
        self.assertFalse(os.path.exists(os.path.join(self.dir, 'damaged-report.html')))

    def test_demo_dir_that_cannot_be_made(self):
        for where in ('/proc/x', os.path.join(self.store, 'x'), os.path.join('/proc/x', 'y')):
            self.assertOneLineError(runCli('demo', '--dir', where), f"--dir {where}",
                                    'cannot create it')
        self.assertStoreUnchanged()

    def test_a_store_locked_by_another_program(self):
        holder = sqlite3.connect(self.store, isolation_level=None)
        try:
            holder.execute("PRAGMA locking_mode=EXCLUSIVE")
            holder.execute("BEGIN EXCLUSIVE")
            holder.execute("COMMIT")  # the lock stays: exclusive locking mode
            for args in (['report', self.store], ['export', self.store]):
                line = self.assertOneLineError(runCli(*args), 'is locked by another program')
                self.assertNotIn('not a readable', line)
        finally:
            holder.close()
        self.assertStoreUnchanged()

    def test_an_unexpected_error_names_the_file_with_its_traceback(self):
        script = ("import sys\n"
                  "from buildbot_stats.cli import report, main\n"
                  "def collect(*args):\n"
                  "    raise ZeroDivisionError('a bug\\nover two lines')\n"
                  "report.collect = collect\n"
                  "sys.exit(main.main(sys.argv[1:]))\n")
        result = subprocess.run([sys.executable, '-c', script, 'report', self.store],
                                capture_output=True, text=True, timeout=120)
        line = self.assertOneLineError(result, 'internal error (ZeroDivisionError: a bug\\nover '
                                       'two lines)', 'please report it', status=1)
        path = re.search(r'the full traceback is in (\S+);', line).group(1)
        self.addCleanup(os.remove, path)
        self.assertEqual(os.path.dirname(path), tempfile.gettempdir())
        self.assertTrue(os.path.basename(path).startswith('buildbot-stats-report-'), path)
        with open(path) as f:
            text = f.read()
        self.assertIn('Traceback (most recent call last)', text)
        self.assertIn('File "<string>", line 4, in collect', text)
        self.assertIn("ZeroDivisionError: a bug\nover two lines\n", text)
        self.assertIn(repr(['report', self.store]), text)
        self.assertFalse(os.path.exists(os.path.join(self.dir, 'stats-report.html')))

    @defer.inlineCallbacks
    def test_a_closed_pipe_is_not_an_error(self):
        big = os.path.join(self.dir, 'big.sqlite')
        yield makeStoreOf(big, [
            ('s', {'v': i, 'text': 'y' * 100}, {}, T0 + i) for i in range(3000)])
        result = subprocess.run(
            ['bash', '-c', 'set -o pipefail; "$@" | head -n 2', 'sh'] + command()
            + ['export', big], capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, '')
        self.assertEqual(len(result.stdout.splitlines()), 2)


class SmallThings(SafetyBase):
    @defer.inlineCallbacks
    def test_one_time_format_and_singular_wording(self):
        one = os.path.join(self.dir, 'one.sqlite')
        yield makeStoreOf(one, [
            ('s', {'v': 1}, {'builder_name': 'b', 'build_number': '1'}, T0)])
        result = runCli('report', one, '--no-html')
        self.assertEqual(result.returncode, 0, result.stderr)
        rows = [line.split() for line in result.stdout.splitlines() if line.startswith('s ')]
        self.assertEqual(rows, [['s', 'v', '1', '1', '1', '1']])
        self.assertIn("\n0 builds of 1 builder;", result.stdout)
        target = os.path.join(self.dir, 'one.csv')
        result = runCli('export', one, '-o', target)
        self.assertEqual(result.stderr, f"exported 1 point of 1 series to {target}\n")

        # whole seconds and fractions: one form, with microseconds, in CSV and JSON lines
        status, out = self.main('export', self.store)
        times = [r['time'] for r in csv.DictReader(io.StringIO(out))]
        self.assertIn('2023-11-14T22:13:20.000000+00:00', times)
        self.assertIn('2023-11-14T22:13:20.500000+00:00', times)
        for t in times:
            self.assertRegex(t, r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$')
        status, out = self.main('export', self.store, '-f', 'jsonl')
        for line in out.splitlines():
            self.assertRegex(json.loads(line)['time'], r'\.\d{6}\+00:00$')

    @defer.inlineCallbacks
    def test_names_with_control_characters_stay_on_their_line(self):
        odd = os.path.join(self.dir, 'odd.sqlite')
        tags = {'builder_name': 'two\nlines', 'build_number': '1'}
        yield makeStoreOf(odd, [
            ('two\nlines-build-times', {'duration': 3.0}, tags, T0),
            ('evil\x1b[2Jseries\nINJECTED', {'v\rx': 1}, tags, T0 + 1),
        ])
        result = runCli('report', odd, '--no-html')
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn('\x1b', result.stdout)
        self.assertNotIn('\r', result.stdout)
        self.assertIn("evil\\x1b[2Jseries\\nINJECTED  v\\rx", result.stdout)
        self.assertEqual(result.stdout.splitlines()[2].split()[0], 'two\\nlines')
        self.assertFalse(any(line.startswith('INJECTED') for line in result.stdout.splitlines()))
        # an error message naming them is one line too
        result = runCli('export', odd, '-s', 'none')
        self.assertOneLineError(result, "unknown series 'none'", 'two\\nlines-build-times')

    def test_sub_second_and_multi_day_axes_have_distinct_labels(self):
        for span in (0.2, 0.004, 1e-6, 3.0, 90.0, 3 * 86400):
            chart = charts.lineChart([('x', [(T0, 1.0), (T0 + span, 2.0)])])
            labels = re.findall(r'<text x="[\d.]+" y="236" text-anchor="\w+">([^<]+)</text>',
                                chart)
            self.assertEqual(len(labels), 5, chart)
            self.assertEqual(len(set(labels)), 5, (span, labels))
        self.assertEqual(charts.timeLabels([T0 + 0.05 * i for i in range(5)], 0.2),
                         ['22:13:20.000', '22:13:20.050', '22:13:20.100', '22:13:20.150',
                          '22:13:20.200'])
        self.assertEqual(charts.timeLabels([T0 + 600 * i for i in range(5)], 2400),
                         ['22:13', '22:23', '22:33', '22:43', '22:53'])


class SetUp(unittest.TestCase):
    timeout = 300

    def test_run_demos_set_up_is_silent_once_installed(self):
        # every ./run-demo (and ./run-tests) runs it: pip ran each time and printed a page of
        # setuptools warnings about the editable install
        env = dict(os.environ, BUILDBOT_STATS_VENV=sys.prefix)
        for _ in range(2):  # the first may install (setup.py changed): silent too
            result = subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'setup-env.sh'),
                                     'test'], env=env, capture_output=True, text=True,
                                    timeout=280)
            self.assertEqual((result.returncode, result.stdout, result.stderr), (0, '', ''))
        with open(os.path.join(sys.prefix, '.buildbot_stats-install')) as f:
            self.assertTrue(f.read().rstrip().endswith(f" test {ROOT}"))


class ChartLegend(unittest.TestCase):
    def test_the_legend_never_covers_a_point(self):
        # the line at the top of the range and a point at its first time: where the legend
        # was drawn (inside the plot, top left)
        for labels in (['median', 'p90', 'builds'],
                       [f'a-rather-long-field-name-{i}' for i in range(7)]):
            lines = [(label, [(T0, 100.0), (T0 + 60, 50.0 + i), (T0 + 3600, 99.0)])
                     for i, label in enumerate(labels)]
            chart = charts.lineChart(lines)
            legend = [(float(x), float(y)) for x, y in re.findall(
                r'<rect class="legend" x="([\d.]+)" y="([\d.]+)"', chart)]
            self.assertEqual(len(legend), len(labels))
            points = [(float(x), float(y)) for x, y in re.findall(
                r'<circle cx="([\d.]+)" cy="([\d.]+)" r="3"', chart)]
            self.assertEqual(len(points), 3 * len(labels))
            legend_bottom = max(y for _, y in legend) + 10
            self.assertLess(legend_bottom, min(y for _, y in points) - 3, chart[:600])
            # every item within the chart's width (the long names take two rows)
            width = float(re.search(r'width="(\d+)"', chart).group(1))
            for (x, _), label in zip(legend, labels):
                self.assertLessEqual(x + 24 + 7 * len(label), width)
        self.assertGreater(len({y for _, y in legend}), 1)
        # a chart of one line has no legend and the size it always had
        one = charts.lineChart([('x', [(T0, 1.0), (T0 + 1, 2.0)])])
        self.assertNotIn('class="legend"', one)
        self.assertIn('height="260"', one)


class DemoInterrupted(unittest.TestCase):
    timeout = 300

    def test_ctrl_c_keeps_only_the_builds_shown(self):
        # ./run-demo, and `kill -INT` of its PID: the script replaces itself with the demo
        # (a shell waiting for a child ignores the signal). Started with SIGINT ignored, as
        # a shell starts a background job (and as this test suite may be run): the command
        # takes SIGINT back; Twisted only takes a SIGINT that has Python's default handler,
        # so before, the signal was lost and the demo ran to its end with status 0
        workdir = os.path.abspath(self.mktemp())
        env = dict(os.environ, BUILDBOT_STATS_VENV=sys.prefix)
        proc = subprocess.Popen([os.path.join(ROOT, 'run-demo'), '--dir', workdir,
                                 '--builds', '30'], env=env, cwd=os.path.dirname(workdir),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                 signal.SIG_IGN))
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        shown = []
        deadline = time.monotonic() + 240
        for line in proc.stdout:
            m = re.match(r'  build (\d+)/30: (\w+) #(\d+) [\d.]+s (\w+)$', line)
            if m:
                shown.append((m.group(2), int(m.group(3)), m.group(4)))
                # the other two builders have a build running now
                proc.send_signal(signal.SIGINT)
                sent = time.monotonic()
                break
            self.assertLess(time.monotonic(), deadline, "no build finished")
        out, err = proc.communicate(timeout=240)
        took = time.monotonic() - sent
        for line in out.splitlines():
            m = re.match(r'  build (\d+)/30: (\w+) #(\d+) [\d.]+s (\w+)$', line)
            if m:
                shown.append((m.group(2), int(m.group(3)), m.group(4)))
        self.assertEqual(proc.returncode, 130, out + err)
        self.assertEqual(err, "buildbot-stats demo: interrupted\n")
        self.assertNotIn('FAILED', out)
        self.assertTrue(all(status == 'ok' for _, _, status in shown), shown)
        self.assertRegex(out, r"\n\nStopped after \d+ builds?\. The store keeps the builds "
                         r"above(; \d+ builds? cut off on the way out not kept)?: .*stats\.sqlite\n$")
        # the bound is cli.interrupt.GRACE (0.8 s, benchmarks/interrupt.py measures it);
        # this generous one only tells it from a stop that waits for the builds (2-3 s) or
        # for ever, on a loaded machine
        self.assertLess(took, 10, out)
        store = os.path.join(workdir, 'master', 'stats.sqlite')
        conn = sqlite3.connect(store)
        self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone(), ('ok',))
        kept = set(conn.execute("SELECT DISTINCT builder, build_number FROM points_json"))
        conn.close()
        self.assertEqual(kept, {(b, n) for b, n, _ in shown})
        # the worker's commands (a sleep of 1 to 3 s in each build) ended with the demo
        self.assertEqual(processesIn(workdir), [])


def processesIn(directory):
    """The command lines of the processes whose working directory is under ``directory``
    (the demo's worker runs its commands in its builders' directories)."""
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                cwd = os.readlink(f'/proc/{entry}/cwd')
                with open(f'/proc/{entry}/cmdline', 'rb') as f:
                    cmdline = f.read().replace(b'\0', b' ').decode(errors='replace')
            except OSError:
                continue
            if cwd == directory or cwd.startswith(directory + os.sep):
                found.append(cmdline)
    return found


# -- random arguments -------------------------------------------------------------------------

class RandomArguments(SafetyBase):
    """Whatever the arguments: status 0 or 2, at most one line on standard error with 2,
    the store unchanged, no temporary file left."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        d = self.dir
        for name, text in (('notes.txt', 'hello\n'), ('old.csv', 'a,b\n1,2\n')):
            with open(os.path.join(d, name), 'w') as f:
                f.write(text)
        os.makedirs(os.path.join(d, 'empty'))
        os.makedirs(os.path.join(d, 'full'))
        with open(os.path.join(d, 'full', 'x'), 'w') as f:
            f.write('x')
        os.symlink(self.store, os.path.join(d, 'link.sqlite'))
        s = self.store
        self.paths = [
            s, s + '-wal', s + '-shm', s + '-journal', os.path.join(d, '.', 'stats.sqlite'),
            os.path.join(d, 'empty', '..', 'stats.sqlite'), os.path.join(d, 'link.sqlite'),
            os.path.join(d, 'notes.txt'), os.path.join(d, 'old.csv'), d,
            os.path.join(d, 'empty'), os.path.join(d, 'full'), os.path.join(d, 'new.out'),
            os.path.join(d, 'missing', 'new.out'), os.path.join(s, 'under'),
            '/proc/x/y', '', '-',
        ]
        # the demo gets only directories it must refuse: one it accepts would run a master
        self.demoDirs = [s, os.path.join(d, 'notes.txt'), d, os.path.join(d, 'full'),
                         os.path.join(s, 'x'), '/proc/x', os.path.join(d, 'link.sqlite')]

    def argvs(self):
        path = st.sampled_from(self.paths)
        # half the time one of the names of the real store: its commands run to the end
        store = st.one_of(st.sampled_from(self.paths[4:7] + [self.store]), path)
        # what a shell can pass: no NUL, no lone surrogate
        text = st.text(alphabet=st.characters(blacklist_categories=('Cs',),
                                              blacklist_characters='\x00'), max_size=12)
        extra = st.one_of(st.just([]), st.lists(text, min_size=1, max_size=1))  # a stray word
        time_ = st.one_of(text, st.sampled_from(['1d', '2d', '30m', '2023-11-14', str(T0),
                                                 '2023-11-14T22:15:00', 'nan', '-1']))
        report = st.tuples(
            st.just(['report']), store.map(lambda p: [p]),
            st.sampled_from([[], ['--no-html']]) | path.map(lambda p: ['--html', p]),
            extra)
        export = st.tuples(
            st.just(['export']), store.map(lambda p: [p]),
            st.lists(st.one_of(
                path.map(lambda p: ['-o', p]),
                st.sampled_from(['csv', 'jsonl', 'line', 'xml']).map(lambda f: ['-f', f]),
                st.one_of(text, st.sampled_from(['alpha-*', '*', 'beta-coverage'])).map(
                    lambda s: ['-s', s]),
                time_.map(lambda t: ['--start', t]), time_.map(lambda t: ['--end', t])),
                max_size=4).map(lambda opts: [x for o in opts for x in o]),
            extra)
        demo = st.tuples(
            st.just(['demo']), st.sampled_from(self.demoDirs).map(lambda p: ['--dir', p]),
            st.lists(st.one_of(
                st.one_of(text, st.integers(-5, 50).map(str)).map(lambda n: ['--builds', n]),
                st.one_of(text, st.integers(-5, 50).map(str)).map(lambda n: ['--timeout', n]),
                st.just(['--no-progress'])), max_size=2).map(
                    lambda opts: [x for o in opts for x in o]),
            st.just([]))
        return st.one_of(report, export, demo).map(lambda parts: [x for p in parts for x in p])

    def check(self, argv, status, err):
        self.assertIn(status, (0, 2), (argv, err))
        self.assertNotIn('Traceback', err)
        if status == 2:
            self.assertEqual(len(err.splitlines()), 1, (argv, err))
        self.assertStoreUnchanged()
        self.assertEqual(leftovers(self.dir), [])

    def test_in_process(self):
        seen = collections.Counter()

        @settings(max_examples=250, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(self.argvs())
        def run(argv):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                status = cli_main.main(argv, out=out)
            self.check(argv, status, err.getvalue())
            seen[argv[0], status] += 1

        run()
        # not only refusals: every command was tried, reports and exports were written
        self.assertTrue({('report', 0), ('export', 0), ('report', 2), ('export', 2),
                         ('demo', 2)} <= set(seen), seen)

    def test_as_the_installed_command(self):
        @settings(max_examples=6, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(self.argvs())
        def run(argv):
            result = runCli(*argv, cwd=self.dir)
            self.check(argv, result.returncode, result.stderr)

        run()
