"""The lines not yet written to the server, mirrored on disk, so a restart or a crash
loses none.

One file ``<seq>.lp`` per chunk of the buffer (docs/storage-influxdb.rst, "The spool").
The file of the open chunk is a journal: the lines accepted by ``postStatsValue`` are
appended to it with one plain ``os.write`` per reactor iteration (a ``callLater(0)``
gathers the lines of the iteration; a large pile is written at once), on the reactor
thread, to a file descriptor opened when the chunk began. A SIGKILL therefore loses at most
the lines of the iteration it interrupts: every line accepted earlier is in the kernel.
With ``fsync`` the thread pool also runs ``fsync`` after each write (one at a time), so a
power cut loses at most the lines written since the last one completed.

A file is deleted as soon as every line of it ended (accepted, rejected or dropped). At
start the files left behind are read back, oldest first, and sent before anything new.
Each write is one record with its length and checksum: a record cut short (a crash in the
middle of a write, a power cut) ends the file's good part and is counted (``torn``); a file
whose header is bad is renamed ``*.corrupt``, counted and skipped: never a crash at start.

Closing, fsync and deleting run in the reactor's thread pool, in the order they were asked
for, one job per group of operations (never one per point).
"""

from __future__ import annotations

import os
import zlib

from twisted.internet import defer
from twisted.internet import threads
from twisted.python import log

MAGIC = b'BBSTATS-SPOOL 1'    # version 1: one header, one body (read at start only)
JOURNAL = b'BBSTATS-SPOOL 2\n'  # version 2: a header line, then appended records
SUFFIX = '.lp'
# Lines accepted in one reactor iteration are written together; a pile this large is
# written at once, so that no burst waits in memory only.
WRITE_THRESHOLD = 256 * 1024


class Segment:
    """One spool file; ``holders`` is how many chunks still hold lines of it; ``fd`` is
    its open descriptor while it is the journal of the open chunk."""

    __slots__ = ('seq', 'path', 'nbytes', 'holders', 'fd')

    def __init__(self, seq, path, nbytes, holders=1, fd=None):
        self.seq = seq
        self.path = path
        self.nbytes = nbytes
        self.holders = holders
        self.fd = fd


def encodeRecord(lines):
    """One journal record: ``<crc32 hex> <length>\\n`` then the lines, each ending in a
    newline."""
    payload = b''.join(line + b'\n' for line in lines)
    return b'%08x %d\n' % (zlib.crc32(payload), len(payload)) + payload


def encodeJournal(lines):
    """A whole version 2 spool file holding ``lines``."""
    return JOURNAL + encodeRecord(lines)


def decodeJournal(data):
    """``(lines, torn)``: the lines of the complete records of a version 2 file, and how
    many bytes after them were cut short or damaged (0 for a clean file)."""
    if not data.startswith(JOURNAL):
        raise ValueError("not a spool file (bad header)")
    lines = []
    pos = len(JOURNAL)
    while pos < len(data):
        nl = data.find(b'\n', pos)
        parts = data[pos:nl].split(b' ') if nl >= 0 else ()
        try:
            crc, size = int(parts[0], 16), int(parts[1])
        except (ValueError, IndexError):
            break
        payload = data[nl + 1:nl + 1 + size]
        if len(payload) < size or zlib.crc32(payload) != crc or not payload.endswith(b'\n'):
            break
        lines.extend(payload[:-1].split(b'\n'))
        pos = nl + 1 + size
    return lines, len(data) - pos


def encodeFile(lines):
    """A version 1 spool file (kept for the tests of reading old spools)."""
    body = b'\n'.join(lines)
    return b'%s %d %08x\n' % (MAGIC, len(lines), zlib.crc32(body)) + body


def decodeFile(data):
    """The lines of a spool file, or ValueError saying why it is damaged."""
    if data.startswith(JOURNAL):
        lines, torn = decodeJournal(data)
        if torn:
            raise ValueError(f"{torn} bytes cut short or damaged at the end")
        return lines
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
    :param reactor: whose thread pool runs closing, fsync and deleting, and whose
        ``callLater(0)`` gathers the lines of one iteration into one write
    :param fsync: also ``fsync`` each write (in the thread pool), to survive a power cut
    """

    def __init__(self, directory, max_bytes, reactor, fsync=False):
        self.directory = directory
        self.max_bytes = max_bytes
        self.reactor = reactor
        self.fsync = fsync
        self.bytes = 0
        self.corrupt = 0        # files renamed *.corrupt at start
        self.torn = 0           # files whose last record was cut short (a crash)
        self.write_errors = 0   # os.write failures (the lines stay in memory)
        self.writes = 0         # os.write calls of the journal
        self._next_seq = 0
        self._journal = None    # the Segment of the open chunk
        self._pending = []      # lines accepted in this iteration, not yet written
        self._pending_bytes = 0
        self._write_call = None
        self._journal_broken = False
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
        found, corrupt, torn, seqs = [], [], [], []
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
                if not data:
                    lines = []  # created, then killed before its first write
                elif data.startswith(JOURNAL):
                    lines, cut = decodeJournal(data)
                    if cut:
                        torn.append((name, cut, len(lines)))
                else:
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
        return found, corrupt, torn, max(seqs, default=-1) + 1

    def _loaded(self, result):
        found, corrupt, torn, nextSeq = result
        self._next_seq = max(self._next_seq, nextSeq)
        for name, why in corrupt:
            self.corrupt += 1
            log.msg(f"buildbot_stats: spool {self.directory}: skipped damaged file {name} "
                    f"({why}); renamed to {name}.corrupt")
        for name, cut, kept in torn:
            self.torn += 1
            log.msg(f"buildbot_stats: spool {self.directory}: {name} ends with a write cut "
                    f"short ({cut} bytes, a crash during the write); its {kept} complete "
                    "lines are kept")
        out = []
        for seq, path, nbytes, lines in found:
            self.bytes += nbytes
            out.append((Segment(seq, path, nbytes), lines))
        return out

    # -- the journal of the open chunk ------------------------------------------------------

    def append(self, line):
        """A line joins the open chunk: it is written to the journal file before the next
        reactor iteration polls for I/O (or at once when the pile is large)."""
        self._pending.append(line)
        self._pending_bytes += len(line) + 1
        if self._pending_bytes >= WRITE_THRESHOLD:
            self.writePending()
        elif self._write_call is None:
            self._write_call = self.reactor.callLater(0, self.writePending)

    def writePending(self):
        """Write the lines appended since the last write: one ``os.write`` of one record."""
        if self._write_call is not None:
            if self._write_call.active():
                self._write_call.cancel()
            self._write_call = None
        if not self._pending:
            return
        lines, self._pending, self._pending_bytes = self._pending, [], 0
        try:
            seg = self._journal
            record = encodeRecord(lines)
            if seg is None:
                seg = self._openJournal()
                record = JOURNAL + record
            _writeAll(seg.fd, record)
        except OSError as e:
            # the lines stay in memory; the chunk is written whole at stop (add) if the
            # disk lets, and this journal, now short of lines, is not used for it
            self._journal_broken = True
            self.write_errors += 1
            if self.write_errors == 1 or self.write_errors % 1000 == 0:
                log.msg(f"buildbot_stats: error: spool {self.directory}: cannot write: {e} "
                        f"({self.write_errors} failed writes so far)")
            return
        self.writes += 1
        seg.nbytes += len(record)
        self.bytes += len(record)
        if self.fsync:
            self._ops.append(('fsync', seg, None))
            self._kick()

    def _openJournal(self):
        seq = self._next_seq
        self._next_seq += 1
        path = os.path.join(self.directory, f'{seq:016d}{SUFFIX}')
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        seg = self._journal = Segment(seq, path, 0, fd=fd)
        if self.fsync:
            self._ops.append(('fsyncdir', seg, None))
        return seg

    def seal(self, chunk):
        """The open chunk was sealed as ``chunk``: its journal (holding exactly its lines)
        becomes the chunk's file and is closed. Returns the segment (None if the journal
        could not be written: :meth:`add` writes the chunk whole at stop)."""
        self.writePending()
        seg, self._journal = self._journal, None
        broken, self._journal_broken = self._journal_broken, False
        if seg is not None:
            self._ops.append(('close', seg, None))
            if broken:
                self.bytes -= seg.nbytes
                self._ops.append(('delete', seg, None))
                seg = None
            else:
                chunk.segment = seg
            self._kick()
        return seg

    # -- whole files ----------------------------------------------------------------------

    def add(self, chunk):
        """Mirror a sealed chunk that has no file yet as a whole file (in the thread pool)."""
        seq = self._next_seq
        self._next_seq += 1
        data = encodeJournal(chunk.lines)
        seg = Segment(seq, os.path.join(self.directory, f'{seq:016d}{SUFFIX}'), len(data))
        chunk.segment = seg
        self.bytes += len(data)
        self._ops.append(('write', seg, data))
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
        """A Deferred that fires once every line appended and every operation asked for so
        far is on disk."""
        self.writePending()
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
        synced = set()
        for kind, seg, content in ops:
            if kind == 'write':
                if seg.seq in deleted:
                    continue  # written and acknowledged before it reached the disk
                tmp = seg.path[:-len(SUFFIX)] + '.tmp'
                with open(tmp, 'wb') as f:
                    f.write(content)
                    if self.fsync:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, seg.path)
            elif kind == 'fsync':
                # one fsync per file per job covers every write before it
                if seg.fd is not None and seg.seq not in synced and seg.seq not in deleted:
                    synced.add(seg.seq)
                    os.fsync(seg.fd)
            elif kind == 'fsyncdir':
                dirfd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dirfd)
                finally:
                    os.close(dirfd)
            elif kind == 'close':
                fd, seg.fd = seg.fd, None
                if fd is not None:
                    os.close(fd)
            else:
                try:
                    os.unlink(seg.path)
                except FileNotFoundError:
                    pass

    def _inThread(self, f, *args):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)


def _writeAll(fd, data):
    """``os.write`` until all of ``data`` is written (a regular file takes it in one)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
