"""The chunks not yet written, mirrored on disk, so a restart or a crash loses none.

Each sealed chunk becomes one file ``<seq>.lp`` in the spool directory, written as soon as
the chunk is sealed and deleted as soon as every line of it ended (accepted, rejected or
dropped). At start the files left behind are read back, oldest first, and sent before
anything new. Files are written to a temporary name and renamed, so a crash never leaves a
half file under a real name; a file that is still damaged (a bad header, a wrong length or
checksum) is renamed ``*.corrupt``, counted and skipped: never a crash at start.

All disk I/O runs in the reactor's thread pool, one job per group of operations (never one
per point), in the order the operations were asked for.
"""

from __future__ import annotations

import os
import zlib

from twisted.internet import defer
from twisted.internet import threads
from twisted.python import log

MAGIC = b'BBSTATS-SPOOL 1'
SUFFIX = '.lp'


class Segment:
    """One spool file; ``holders`` is how many chunks still hold lines of it."""

    __slots__ = ('seq', 'path', 'nbytes', 'holders')

    def __init__(self, seq, path, nbytes, holders=1):
        self.seq = seq
        self.path = path
        self.nbytes = nbytes
        self.holders = holders


def encodeFile(lines):
    return encodeBody(b'\n'.join(lines), len(lines))


def encodeBody(body, count):
    """A spool file holding ``count`` lines joined by newlines in ``body``."""
    header = b'%s %d %08x\n' % (MAGIC, count, zlib.crc32(body))
    return header + body


def decodeFile(data):
    """The lines of a spool file, or ValueError saying why it is damaged."""
    header, sep, body = data.partition(b'\n')
    parts = header.split(b' ')
    if not sep or b' '.join(parts[:2]) != MAGIC or len(parts) != 4:
        raise ValueError("not a spool file (bad header)")
    try:
        count, crc = int(parts[2]), int(parts[3], 16)
    except ValueError as e:
        raise ValueError("bad header") from e
    if zlib.crc32(body) != crc:
        raise ValueError("checksum mismatch (truncated or damaged)")
    lines = body.split(b'\n') if body else []
    if len(lines) != count:
        raise ValueError(f"{len(lines)} lines where the header says {count}")
    return lines


class Spool:
    """The spool directory of one backend.

    :param directory: where the files live (created if missing)
    :param max_bytes: the most bytes of live files; the writer drops the oldest chunks
        beyond it
    :param reactor: whose thread pool runs the disk I/O
    """

    def __init__(self, directory, max_bytes, reactor):
        self.directory = directory
        self.max_bytes = max_bytes
        self.reactor = reactor
        self.bytes = 0
        self.corrupt = 0
        self._next_seq = 0
        self._ops = []
        self._busy = False
        self._idle_waiters = []

    # -- start ------------------------------------------------------------------------

    def load(self):
        """Read the files left by a previous run; a Deferred firing with a list of
        ``(segment, lines)``, oldest first."""
        d = self._inThread(self._loadAll)
        d.addCallback(self._loaded)
        return d

    def _loadAll(self):
        os.makedirs(self.directory, exist_ok=True)
        found, corrupt, seqs = [], [], []
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            stem, ext = os.path.splitext(name)
            if ext == '.tmp':
                # a write the crash interrupted: its lines were only in memory
                corrupt.append((name, "incomplete write"))
                os.replace(path, path + '.corrupt')
                continue
            if ext != SUFFIX:
                continue
            try:
                seq = int(stem)
                with open(path, 'rb') as f:
                    data = f.read()
                lines = decodeFile(data)
            except (ValueError, OSError) as e:
                corrupt.append((name, str(e)))
                try:
                    os.replace(path, path + '.corrupt')
                except OSError:
                    pass
                continue
            seqs.append(seq)
            if lines:
                found.append((seq, path, len(data), lines))
            else:
                os.unlink(path)
        return found, corrupt, max(seqs, default=-1) + 1

    def _loaded(self, result):
        found, corrupt, nextSeq = result
        self._next_seq = max(self._next_seq, nextSeq)
        for name, why in corrupt:
            self.corrupt += 1
            log.msg(f"buildbot_stats: spool {self.directory}: skipped damaged file {name} "
                    f"({why}); renamed to {name}.corrupt")
        out = []
        for seq, path, nbytes, lines in found:
            self.bytes += nbytes
            out.append((Segment(seq, path, nbytes), lines))
        return out

    # -- running ----------------------------------------------------------------------

    def add(self, chunk):
        """Mirror a sealed chunk on disk (soon, in the thread pool)."""
        seq = self._next_seq
        self._next_seq += 1
        # header + body
        nbytes = len(chunk.body) + 40
        seg = Segment(seq, os.path.join(self.directory, f'{seq:016d}{SUFFIX}'), nbytes)
        chunk.segment = seg
        self.bytes += nbytes
        self._ops.append(('write', seg, (chunk.body, chunk.count)))
        self._kick()
        return seg

    def release(self, segment):
        """A chunk holding lines of ``segment`` ended; delete the file once none does."""
        segment.holders -= 1
        if segment.holders == 0:
            self.bytes -= segment.nbytes
            self._ops.append(('delete', segment, None))
            self._kick()

    def drain(self):
        """A Deferred that fires once every operation asked for so far is on disk."""
        if not self._busy and not self._ops:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle_waiters.append(d)
        return d

    def _kick(self):
        if self._busy or not self._ops:
            return
        ops, self._ops = self._ops, []
        self._busy = True
        d = self._inThread(self._run, ops)
        d.addErrback(lambda f: log.err(f, f"buildbot_stats: spool {self.directory} failed"))
        d.addBoth(self._ran)

    def _ran(self, _):
        self._busy = False
        if self._ops:
            self._kick()
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for d in waiters:
            d.callback(None)

    def _run(self, ops):
        deleted = {seg.seq for kind, seg, _ in ops if kind == 'delete'}
        for kind, seg, content in ops:
            if kind == 'write':
                if seg.seq in deleted:
                    continue  # written and acknowledged before it reached the disk
                tmp = seg.path[:-len(SUFFIX)] + '.tmp'
                with open(tmp, 'wb') as f:
                    f.write(encodeBody(*content))
                os.replace(tmp, seg.path)
            else:
                try:
                    os.unlink(seg.path)
                except FileNotFoundError:
                    pass

    def _inThread(self, f, *args):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)
