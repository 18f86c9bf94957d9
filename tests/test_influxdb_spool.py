"""The spool: points not yet written survive a restart and a crash, and go out in order,
once each, when the server is back."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

from twisted.internet import defer
from twisted.internet import reactor
from twisted.internet import task
from twisted.trial import unittest

from buildbot_stats import stats
from buildbot_stats.delivery import spool as spoolmod
from buildbot_stats.delivery.buffer import Chunk
from tests.servers import InfluxDB1Server
from tests.waiting import waitUntil


class SpoolFiles(unittest.TestCase):

    def test_file_round_trip_and_damage_detected(self):
        lines = [b'm v=1i 1', b'm,t=a\\ b v="x" 2']
        data = spoolmod.encodeFile(lines)
        self.assertEqual(spoolmod.decodeFile(data), lines)
        for bad in (data[:-3], data[:10], b'', b'junk\n' + data, data.replace(b'v=1i', b'v=2i')):
            self.assertRaises(ValueError, spoolmod.decodeFile, bad)

    @defer.inlineCallbacks
    def test_damaged_files_are_skipped_and_counted(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        good = spoolmod.encodeFile([b'm v=1i 1', b'm v=2i 2'])
        with open(os.path.join(d, '0000000000000003.lp'), 'wb') as f:
            f.write(good)
        with open(os.path.join(d, '0000000000000001.lp'), 'wb') as f:
            f.write(good[:-4])  # truncated
        with open(os.path.join(d, '0000000000000002.tmp'), 'wb') as f:
            f.write(good)  # a write cut by a crash
        spool = spoolmod.Spool(d, 10**6, reactor)
        loaded = yield spool.load()
        self.assertEqual([(s.seq, lines) for s, lines in loaded],
                         [(3, [b'm v=1i 1', b'm v=2i 2'])])
        self.assertEqual(spool.corrupt, 2)
        self.assertEqual(sorted(os.listdir(d)), ['0000000000000001.lp.corrupt',
                                                 '0000000000000002.tmp.corrupt',
                                                 '0000000000000003.lp'])
        # new files continue the numbering
        chunk = Chunk([b'x v=1i 5'])
        seg = spool.add(chunk)
        self.assertEqual(seg.seq, 4)
        yield spool.drain()
        spool.release(seg)
        spool.release(loaded[0][0])
        yield spool.drain()
        self.assertEqual(sorted(n for n in os.listdir(d) if n.endswith('.lp')), [])


class Journal(unittest.TestCase):
    """The open chunk's file: one write per reactor iteration, records that show a cut."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.clock = task.Clock()
        self.spool = spoolmod.Spool(self.dir, 10**9, self.clock)
        self.addCleanup(self.closeJournal)

    def closeJournal(self):
        if self.spool._journal is not None:
            os.close(self.spool._journal.fd)

    def content(self):
        names = sorted(os.listdir(self.dir))
        self.assertEqual(len(names), 1, names)
        with open(os.path.join(self.dir, names[0]), 'rb') as f:
            return f.read()

    def test_the_lines_of_one_iteration_are_one_write(self):
        for i in range(3):
            self.spool.append(b'm v=%di %d' % (i, i))
        self.assertEqual(os.listdir(self.dir), [])  # not yet: the iteration goes on
        self.clock.advance(0)                        # the next iteration, before any I/O
        self.assertEqual(self.spool.writes, 1)
        self.assertEqual(spoolmod.decodeJournal(self.content()),
                         ([b'm v=0i 0', b'm v=1i 1', b'm v=2i 2'], 0))
        self.spool.append(b'm v=3i 3')
        self.spool.append(b'm v=4i 4')
        self.clock.advance(0)
        self.assertEqual(self.spool.writes, 2)
        lines, torn = spoolmod.decodeJournal(self.content())
        self.assertEqual((len(lines), lines[-1], torn), (5, b'm v=4i 4', 0))
        self.assertEqual(self.spool.bytes, len(self.content()))

    def test_a_large_pile_is_written_at_once(self):
        line = b'x' * 1000
        for _ in range(spoolmod.WRITE_THRESHOLD // 1001 + 1):
            self.spool.append(line)
        self.assertEqual(self.spool.writes, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_write_cut_short_keeps_the_complete_records(self):
        self.spool.append(b'a v=1i 1')
        self.clock.advance(0)
        self.spool.append(b'b v=2i 2')
        self.spool.append(b'c v=3i 3')
        self.clock.advance(0)
        data = self.content()
        for cut in range(1, 20):
            lines, torn = spoolmod.decodeJournal(data[:-cut])
            self.assertEqual((lines, torn > 0), ([b'a v=1i 1'], True), cut)
        damaged = data[:-3] + b'X' + data[-2:]
        self.assertEqual(spoolmod.decodeJournal(damaged)[0], [b'a v=1i 1'])

    @defer.inlineCallbacks
    def test_load_keeps_the_lines_before_a_cut_and_counts_it(self):
        self.spool.append(b'a v=1i 1')
        self.clock.advance(0)
        self.spool.append(b'b v=2i 2')
        self.clock.advance(0)
        path = self.spool._journal.path
        with open(path, 'r+b') as f:
            f.truncate(os.path.getsize(path) - 4)  # SIGKILL in the middle of a write
        open(os.path.join(self.dir, '0000000000000007.lp'), 'wb').close()  # killed at open
        again = spoolmod.Spool(self.dir, 10**9, reactor)
        loaded = yield again.load()
        self.assertEqual([lines for _, lines in loaded], [[b'a v=1i 1']])
        self.assertEqual((again.torn, again.corrupt), (1, 0))
        self.assertEqual(len(os.listdir(self.dir)), 1)  # the empty file is gone


class JournalFsync(unittest.TestCase):

    @defer.inlineCallbacks
    def test_fsync_runs_in_the_pool_and_seal_closes_the_file(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        spool = spoolmod.Spool(d, 10**9, reactor, fsync=True)
        synced = []
        real = spoolmod.os.fsync

        def fsync(fd):
            synced.append(fd)
            real(fd)

        self.patch(spoolmod.os, 'fsync', fsync)
        for i in range(3):
            spool.append(b'm v=%di %d' % (i, i))
        chunk = Chunk([b'm v=%di %d' % (i, i) for i in range(3)])
        seg = spool.seal(chunk)
        yield spool.drain()
        self.assertIs(chunk.segment, seg)
        self.assertIsNone(seg.fd)  # closed, after its fsync
        self.assertEqual(len(synced), 2)  # the directory (a new file), then the file
        with open(seg.path, 'rb') as f:
            self.assertEqual(spoolmod.decodeFile(f.read()), chunk.lines)
        spool.release(seg)
        yield spool.drain()
        self.assertEqual(os.listdir(d), [])


class SpoolWithRealInfluxDB(unittest.TestCase):

    def setUp(self):
        self.influx = InfluxDB1Server.start_new()
        self.addCleanup(self.influx.cleanup)
        self.influx.create_database('db')
        self.spool_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.spool_dir)

    def backend(self, **kwargs):
        for k, v in dict(flush_interval=0.05, retry_interval=0.05, jitter=0.0,
                         max_retry_delay=0.5, timeout=2.0, stop_timeout=0.5,
                         batch_size=50).items():
            kwargs.setdefault(k, v)
        return stats.InfluxStorageService(self.influx.url, None, None, None, 'db', [],
                                          spool_dir=self.spool_dir, **kwargs)

    def spoolFiles(self):
        return sorted(n for n in os.listdir(self.spool_dir) if n.endswith('.lp'))

    @defer.inlineCallbacks
    def test_restart_with_server_down_then_back(self):
        # written while all is well: nothing stays in the spool
        b1 = self.backend()
        yield b1.startService()
        b1.postStatsValue({'v': -1}, 'spooled', {}, 999.0)
        yield b1.flush(timeout=5)
        yield b1._writer.spool.drain()  # its file deleted once written
        self.assertEqual(self.spoolFiles(), [])

        self.influx.stop()
        n = 120
        for i in range(n):
            b1.postStatsValue({'v': i}, 'spooled', {'builder_name': 'b'}, 1000.0 + i)
        yield waitUntil(lambda: b1.counters.retries >= 1, "a failed attempt")
        yield b1.stopService()
        self.assertEqual(b1.counters.pending, n)
        self.assertEqual(b1.counters.dropped, 0)
        self.assertEqual(len(self.spoolFiles()), 3)  # batches of 50, 50, 20

        self.influx.start()
        b2 = self.backend()
        yield b2.startService()
        self.assertEqual(b2.counters.added, n)
        m = b2.metrics()
        self.assertEqual((m['spool_torn'], m['spool_corrupt'], m['spool_write_errors']),
                         (0, 0, 0))
        self.assertGreater(m['spool_bytes'], 0)
        ok = yield b2.flush(timeout=10)
        self.assertTrue(ok)
        yield b2.stopService()
        self.assertEqual(b2.counters.asDict(), {
            'added': n, 'written': n, 'rejected': 0, 'dropped': 0, 'retries': 0,
            'pending': 0})
        rows = self.influx.points('db', 'spooled')
        self.assertEqual([r['v'] for r in rows], [-1] + list(range(n)))
        self.assertEqual(self.spoolFiles(), [])

    @defer.inlineCallbacks
    def test_crash_then_restart(self):
        self.influx.stop()
        env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get(
            'PYTHONPATH', ''))
        here = os.path.dirname(os.path.abspath(__file__))
        proc = subprocess.Popen(
            [sys.executable, os.path.join(here, 'spool_crash_script.py'), self.influx.url,
             self.spool_dir, '250'], stdout=subprocess.PIPE, env=env,
            cwd=os.path.dirname(here))
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        # the script says "spooled" once its files are on disk (read off the reactor thread)
        from twisted.internet import threads
        line = yield threads.deferToThread(proc.stdout.readline)
        self.assertEqual(line, b'spooled\n')
        proc.send_signal(signal.SIGKILL)
        yield threads.deferToThread(proc.wait)
        proc.stdout.close()
        self.assertEqual(len(self.spoolFiles()), 3)  # 100 + 100 + 50

        self.influx.start()
        self.influx.create_database('crashdb')
        b = stats.InfluxStorageService(self.influx.url, None, None, None, 'crashdb', [],
                                       spool_dir=self.spool_dir, flush_interval=0.05)
        yield b.startService()
        yield b.flush(timeout=10)
        yield b.stopService()
        self.assertEqual(b.counters.written, 250)
        rows = self.influx.points('crashdb', 'crash')
        self.assertEqual([r['v'] for r in rows], list(range(250)))
        self.assertEqual(self.spoolFiles(), [])

    @defer.inlineCallbacks
    def test_spool_cap_drops_oldest(self):
        self.influx.stop()
        b = self.backend(spool_max_bytes=3000, batch_size=10)
        yield b.startService()
        for i in range(200):   # ~22 bytes a line: ~10 files would be needed
            b.postStatsValue({'v': i}, 'capped', {}, 1000.0 + i)
        yield b.stopService()
        c = b.counters
        self.assertGreater(c.dropped, 0)
        self.assertEqual(c.pending + c.dropped, 200)
        total = sum(os.path.getsize(os.path.join(self.spool_dir, n))
                    for n in self.spoolFiles())
        self.assertLessEqual(total, 3000)
