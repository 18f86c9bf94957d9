"""A real master killed with SIGKILL right after its last build, InfluxDB unreachable, a
spool: after a restart with InfluxDB back, every point of every build is there once, with
its build's time. The master runs as a subprocess (tests/crash_master.py)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

from twisted.internet import defer
from twisted.internet import reactor
from twisted.internet import task
from twisted.internet import threads
from twisted.trial import unittest

from buildbot_stats.delivery import spool as spoolmod
from buildbot_stats.point import to_epoch_ns
from tests import crash_master
from tests.servers import InfluxDB1Server

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'crash_master.py')
MARK = 'every one in the spool'


@defer.inlineCallbacks
def waitForLogLine(path, text, proc, timeout):
    """Poll ``path`` until a line holds ``text`` (fails if ``proc`` exits first)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, encoding='utf-8', errors='replace') as f:
                if text in f.read():
                    return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"the master exited ({proc.returncode}) before logging "
                                 f"{text!r}; see {path}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in {path} within {timeout} s")
        yield task.deferLater(reactor, 0.02, lambda: None)


class SigkillRightAfterTheLastBuild(unittest.TestCase):
    timeout = 300

    def setUp(self):
        InfluxDB1Server.require()
        self.basedir = tempfile.mkdtemp(prefix='buildbot_stats_crash_')
        self.addCleanup(shutil.rmtree, self.basedir, ignore_errors=True)
        # chosen, not started: its port refuses connections while the master runs its builds
        # (the fixture holds it meanwhile, so that nothing else takes it)
        self.influx = InfluxDB1Server()
        self.addCleanup(self.influx.cleanup)

    def master(self, builds, **kwargs):
        proc = subprocess.Popen(
            [sys.executable, SCRIPT, self.basedir, self.influx.url, str(builds)],
            stdin=subprocess.DEVNULL, cwd=self.basedir, **kwargs)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc

    def spoolFiles(self):
        d = os.path.join(self.basedir, 'spool')
        return sorted(n for n in os.listdir(d) if n.endswith('.lp'))

    def builds(self):
        """Every build of the master's database: (builder, number, started, complete)."""
        conn = sqlite3.connect(os.path.join(self.basedir, 'state.sqlite'))
        try:
            return conn.execute(
                "SELECT builders.name, builds.number, builds.started_at, builds.complete_at"
                " FROM builds JOIN builders ON builds.builderid = builders.id"
                " ORDER BY builds.id").fetchall()
        finally:
            conn.close()

    @defer.inlineCallbacks
    def test_every_point_of_every_build_arrives_once_with_its_time(self):
        n = 6
        proc = self.master(n)
        log_path = os.path.join(self.basedir, 'twistd.log')
        yield waitForLogLine(log_path, MARK, proc, timeout=240)
        proc.kill()  # SIGKILL: no stopService, no flush, nothing but what the kernel has
        yield threads.deferToThread(proc.wait)
        self.assertEqual(proc.returncode, -9)

        # nothing was sealed (flush_interval=60): every point is in the open chunk's journal
        files = self.spoolFiles()
        self.assertEqual(len(files), 1, files)
        with open(os.path.join(self.basedir, 'spool', files[0]), 'rb') as f:
            lines, torn = spoolmod.decodeJournal(f.read())
        self.assertEqual((len(lines), torn), (n * crash_master.POINTS_PER_BUILD, 0))

        self.influx.start()
        self.influx.create_database(crash_master.DB)
        again = self.master(0, stdout=subprocess.PIPE)
        out, _ = yield threads.deferToThread(again.communicate, timeout=240)
        self.assertEqual(again.returncode, 0, out)
        result = json.loads(out.decode().strip().splitlines()[-1])
        self.assertTrue(result['flushed'])
        counters = result['counters']
        self.assertEqual(
            {k: counters[k] for k in ('added', 'written', 'rejected', 'dropped', 'pending')},
            {'added': n * 5, 'written': n * 5, 'rejected': 0, 'dropped': 0, 'pending': 0})
        self.assertEqual(self.spoolFiles(), [])

        builds = self.builds()
        self.assertEqual(len(builds), n)
        second = 10**9

        def ns(epoch, us):
            return to_epoch_ns(float(epoch)) + us * 1000

        for builder in crash_master.BUILDERS:
            mine = [b for b in builds if b[0] == builder]
            expected_times, expected_warnings = [], []
            for _, number, started, complete in mine:
                tags = {'builder_name': builder, 'build_number': str(number)}
                expected_times += [
                    dict(tags, time=ns(started, 0), **{'start-time': _iso(started)}),
                    dict(tags, time=ns(complete, 1), **{'end-time': _iso(complete)}),
                    dict(tags, time=ns(complete, 2), duration=float(complete - started)),
                ]
                expected_warnings.append(dict(tags, time=ns(complete, 3), name='warnings',
                                              value=number))
            key = (lambda r: (r['time'], r['build_number']))
            self.assertEqual(sorted(self.influx.points(crash_master.DB,
                                                       f'{builder}-build-times'), key=key),
                             sorted(expected_times, key=key))
            self.assertEqual(self.influx.points(crash_master.DB, f'{builder}-warnings'),
                             sorted(expected_warnings, key=key))
            data = self.influx.points(crash_master.DB, f'{builder}-{crash_master.DATA_NAME}')
            self.assertEqual(sorted(r['number'] for r in data), [b[1] for b in mine])
            for row in data:
                # stamped when the step posted it, during its build (times are whole seconds)
                _, number, started, complete = [b for b in mine if b[1] == row['number']][0]
                self.assertTrue(ns(started, 0) - second <= row['time'] <= ns(complete, 4) +
                                second, (row, started, complete))


def _iso(epoch):
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()
