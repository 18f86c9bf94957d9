"""Ctrl-C and SIGTERM: every command ends within a second of one, leaving every file sound.

For the length of a command (:func:`buildbot_stats.cli.main.runCommand`), SIGINT and SIGTERM
are this module's, whatever the command inherited: a shell that starts a command in the
background, or a test harness, may hand it SIGINT *ignored*, and Twisted then leaves SIGINT
alone (it only takes a SIGINT that has Python's default handler), so that ``kill -INT`` of
a running demo did nothing.

The first signal asks the command to stop: a plain command gets :class:`Interrupted` (a
``KeyboardInterrupt``) at its next Python instruction and unwinds (temporary files removed,
the one line "interrupted"); a command running Twisted's reactor stops it
(:func:`buildbot_stats.cli.common.runReactor` sets :attr:`SignalGuard.onSignal`). Either
may be held up: a query inside SQLite, a database thread waiting for a lock, a master
stopping. So the signal also arms a timer: if the command has not ended :data:`GRACE`
seconds later (or at a second signal), the process ends at once, after the cleanups
registered with :func:`onForcedExit` (the temporary file of an output, the demo's cut-off
builds). Ending a process is safe for every store: SQLite commits are atomic, a store is
only read or written in transactions, and Buildbot's database is only read.

The timer is armed from a thread of its own that wakes on the signal's byte
(``signal.set_wakeup_fd``), so it runs even while the main thread is inside a long SQLite
query or waits for a lock (Buildbot opens its SQLite database on the reactor's thread),
where Python runs no signal handler until the call returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

#: Seconds between a first SIGINT or SIGTERM and the end of the process, at most.
GRACE = 0.8
#: The exit status after each signal: 128 + its number, as a shell reports it.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The command was asked to stop by a signal (``signum``)."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signum)
        self.signum = signum


_cleanups = []


@contextlib.contextmanager
def onForcedExit(cleanup):
    """Within the block, ``cleanup()`` runs (in another thread) if the process is ended by
    the grace timer: it must be quick and never wait for the main thread."""
    _cleanups.append(cleanup)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            _cleanups.remove(cleanup)


class SignalGuard:
    """SIGINT and SIGTERM for the length of one command (a context manager).

    :param label: how the one line names the command (``'buildbot-stats export'``)
    :param grace: seconds from the first signal to the forced end (default :data:`GRACE`)
    """

    #: called with the signal number instead of raising :class:`Interrupted` (a command
    #: running the reactor stops it)
    onSignal = None
    #: True when a signal is the command's normal end (``demo --serve`` waits for
    #: Ctrl-C): a forced end then exits 0, without the "interrupted" line
    expected = False

    def __init__(self, label, grace=None):
        self.label = label
        self.grace = GRACE if grace is None else grace
        self.signum = None
        self.ended = False
        # signals seen by the Python-level handler and by the wakeup watcher: each counts
        # its own, since both see every signal (a second one seen by either: end now)
        self._handled = 0
        self._woken = 0
        self._exiting = False
        self._lock = threading.Lock()
        self._timer = None
        self._previous = {}
        self._wakeup = None

    # -- the length of a command ---------------------------------------------------------

    def __enter__(self):
        global current
        if threading.current_thread() is not threading.main_thread():
            return self  # signals go to the main thread: a command run from another
            # thread (a test's) keeps the handlers it found
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        self.watchWakeups()
        current = self
        return self

    def __exit__(self, *exc):
        global current
        with self._lock:
            self.ended = True  # from here, the command has ended: no forced exit
        if self._timer is not None:
            self._timer.cancel()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}
        self.unwatchWakeups()
        current = None
        return False

    def exitStatus(self):
        if self.expected:
            return 0
        return EXIT_STATUS.get(self.signum, 130)

    # -- a signal -----------------------------------------------------------------------

    def _handle(self, signum, frame):
        self._handled += 1
        self.arm(signum)
        if self._handled > 1:
            self._forceExit()  # a second Ctrl-C: now
        if self.onSignal is not None:
            self.onSignal(signum)
        else:
            raise Interrupted(signum)

    def arm(self, signum):
        """Start the grace timer (once): the process ends :attr:`grace` seconds from now
        unless the command has ended by then."""
        with self._lock:
            if self.signum is None:
                self.signum = signum
            if self._timer is not None or self.ended:
                return
            self._timer = threading.Timer(self.grace, self._forceExit)
            self._timer.daemon = True
            self._timer.start()

    def _forceExit(self):
        with self._lock:
            other = self._exiting
            if not other:
                if self.ended:
                    return  # the command ended by itself
                self.ended = self._exiting = True
        while other:
            # the other listener is ending the process: this thread (the main one, whose
            # handler would raise and unwind meanwhile) waits for it
            time.sleep(1)
        for cleanup in reversed(list(_cleanups)):
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - the process ends anyway
                pass
        # what standard output holds unwritten is lost: flushing it from here could wait
        # for ever on the main thread (a write blocked on a full pipe holds its lock)
        if not self.expected:
            with contextlib.suppress(OSError):
                os.write(2, f"{self.label}: interrupted\n".encode())
        os._exit(self.exitStatus())

    # -- waking while the main thread is in C code ----------------------------------------

    def watchWakeups(self):
        """A thread that arms the timer on the signal's byte, written by Python's C-level
        handler at once (the Python-level one waits for the main thread, which may be
        inside SQLite or waiting for a lock). Python has one wakeup fd: every byte is
        passed on to the one it replaces (Twisted's reactor wakes on it to reap child
        processes)."""
        self.unwatchWakeups()
        read, write = os.pipe()
        os.set_blocking(write, False)
        try:
            previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        except ValueError:  # not the main thread
            os.close(read)
            os.close(write)
            return
        self._wakeup = (write, previous)
        passOn = previous if previous >= 0 else None
        threading.Thread(target=self._readWakeups, args=(read, passOn), daemon=True,
                         name='buildbot-stats signals').start()

    def _readWakeups(self, fd, passOn):
        try:
            while True:
                data = os.read(fd, 64)
                if not data:
                    return  # the write end was closed: no longer watched
                for signum in data:
                    if signum in EXIT_STATUS:
                        self._woken += 1
                        self.arm(signum)
                        if self._woken > 1:
                            self._forceExit()  # a second one, the main thread held up
                if passOn is not None:
                    with contextlib.suppress(OSError):
                        os.write(passOn, data)
        except OSError:
            return
        finally:
            os.close(fd)

    def unwatchWakeups(self):
        """Give the wakeup fd back to whoever had it (before Twisted's reactor starts or
        stops: it installs its own, and sets none when it stops)."""
        if self._wakeup is None:
            return
        write, previous = self._wakeup
        self._wakeup = None
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(previous)
        os.close(write)  # the reader sees the end of the pipe, closes its end, returns

    def reinstall(self):
        """Take SIGINT and SIGTERM back (after Twisted's reactor installed its own)."""
        for sig in SIGNALS:
            if sig in self._previous:
                signal.signal(sig, self._handle)


#: The guard of the command running now (None outside a command, or off the main thread).
current = None
