"""The signal guard of every command (buildbot_stats/cli/interrupt.py), in processes of their
own: a first signal unwinds the command (KeyboardInterrupt), a command held up in C code is
ended after the grace period with its cleanups run, a second signal ends it at once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

from twisted.trial import unittest

SCRIPT = textwrap.dedent('''\
    import os, sqlite3, sys, time
    from buildbot_stats.cli import interrupt
    interrupt.GRACE = float(sys.argv[1])
    mode, marker = sys.argv[2], sys.argv[3]

    def cleanup():
        with open(marker, 'w') as f:
            f.write('cleaned up')

    with interrupt.SignalGuard('guarded') as guard, interrupt.onForcedExit(cleanup):
        if mode == 'stubborn':
            # a command whose stop takes long: the first signal is taken, it goes on
            try:
                print('ready', flush=True)
                while True:
                    time.sleep(0.01)
            except KeyboardInterrupt:
                print('first signal: still stopping', flush=True)
            while True:
                time.sleep(0.01)
        try:
            print('ready', flush=True)
            if mode == 'python':
                while True:
                    time.sleep(0.01)
            elif mode == 'sqlite':
                # held up inside SQLite: its busy handler waits for the lock in C
                conn = sqlite3.connect(sys.argv[4], timeout=60)
                conn.execute("SELECT COUNT(*) FROM t").fetchone()
        except KeyboardInterrupt as e:
            print(f'unwound after signal {e.signum}', flush=True)
            sys.exit(42)
    ''')


class Guard(unittest.TestCase):
    timeout = 120

    def start(self, grace, mode, *extra):
        self.marker = os.path.abspath(self.mktemp())
        proc = subprocess.Popen([sys.executable, '-c', SCRIPT, str(grace), mode, self.marker,
                                 *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.assertEqual(proc.stdout.readline(), 'ready\n')
        return proc

    def test_a_first_signal_unwinds_the_command(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            proc = self.start(30, 'python')
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=60)
            # not the forced end (which the wakeup watcher once took the handler's signal
            # for a second one and chose at once): the command unwound by itself
            self.assertEqual((proc.returncode, out, err),
                             (42, f'unwound after signal {int(signum)}\n', ''))
            self.assertFalse(os.path.exists(self.marker))

    def test_a_command_held_up_in_sqlite_ends_after_the_grace_period(self):
        db = os.path.abspath(self.mktemp())
        holder = sqlite3.connect(db, isolation_level=None)
        self.addCleanup(holder.close)
        holder.execute("CREATE TABLE t (x)")
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("COMMIT")
        proc = self.start(0.5, 'sqlite', db)
        time.sleep(0.2)  # into SQLite's busy wait (nothing to wait on from outside)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=60)
        # the Python handler cannot run inside SQLite: the watcher's timer ended it
        self.assertEqual((proc.returncode, out, err), (130, '', 'guarded: interrupted\n'))
        self.assertLess(time.monotonic() - sent, 30)  # not the 60 s of SQLite's timeout
        with open(self.marker) as f:
            self.assertEqual(f.read(), 'cleaned up')

    def test_a_second_signal_ends_it_at_once(self):
        proc = self.start(30, 'stubborn')
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.stdout.readline(), 'first signal: still stopping\n')
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)  # the grace is 30 s: not waited for
        self.assertEqual((proc.returncode, err), (143, 'guarded: interrupted\n'))
        with open(self.marker) as f:
            self.assertEqual(f.read(), 'cleaned up')
