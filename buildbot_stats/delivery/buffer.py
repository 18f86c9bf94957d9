"""The bounded buffer of encoded lines, kept in chunks.

A chunk is a run of lines added one after the other, at most one batch long: it is the unit
that is sent (one HTTP request), kept for a retry, split (413, isolating a bad line),
mirrored on disk (one spool file) and dropped when room is short. Keeping whole chunks keeps
the accounting exact: every line is in exactly one chunk until that chunk ends accepted,
rejected or dropped.
"""

from __future__ import annotations

import collections


class Chunk:
    """Lines that travel together; ``segment`` is the spool file that holds them, if any.

    A chunk keeps its lines as one request body (the lines joined by newlines; a line never
    holds a raw newline): during an outage the buffer holds ``buffer_limit`` lines, and one
    ``bytes`` object per line would cost about 60 bytes more per point than the line itself.
    """

    __slots__ = ('body', 'count', 'segment', 'failures', 'nbytes')

    def __init__(self, lines, segment=None, failures=0):
        self.body = b'\n'.join(lines)
        self.count = len(lines)
        self.segment = segment
        self.failures = failures
        self.nbytes = None

    @property
    def lines(self):
        """The lines, split again (for a split or a log excerpt: rare)."""
        return self.body.split(b'\n') if self.count else []

    def __len__(self):
        return self.count

    def split(self):
        """Two halves, each holding the same spool segment as this chunk."""
        lines = self.lines
        mid = len(lines) // 2
        halves = (Chunk(lines[:mid], self.segment), Chunk(lines[mid:], self.segment))
        if self.segment is not None:
            self.segment.holders += 1  # one chunk became two
        return halves


class ChunkBuffer:
    """Lines waiting to be sent: sealed chunks, oldest first, then the open chunk.

    :param batch_size: the longest chunk
    :param limit: the most lines held; adding beyond it drops the oldest sealed chunks
    :param on_drop: called with each chunk dropped for room
    """

    def __init__(self, batch_size, limit, on_drop):
        self.batch_size = batch_size
        self.limit = limit
        self.on_drop = on_drop
        self.sealed = collections.deque()
        self.open = []
        self.count = 0  # lines in sealed + open

    def __len__(self):
        return self.count

    def add(self, line):
        """Add one line; returns the chunk sealed by it, if it filled one, else None."""
        self.open.append(line)
        self.count += 1
        sealed = None
        if len(self.open) >= self.batch_size:
            sealed = self.seal()
        if self.count > self.limit:
            self.makeRoom()
        return sealed

    def seal(self):
        """Close the open chunk (if not empty) and return it."""
        if not self.open:
            return None
        chunk = Chunk(self.open)
        self.open = []
        self.sealed.append(chunk)
        return chunk

    def makeRoom(self, keep=None):
        """Drop the oldest sealed chunks until at most ``keep`` (default: the limit) lines
        are held. The open chunk is never dropped: it is at most one batch, and the limit is
        at least one batch."""
        keep = self.limit if keep is None else keep
        while self.count > keep and self.sealed:
            chunk = self.sealed.popleft()
            self.count -= len(chunk)
            self.on_drop(chunk)

    def takeFirst(self):
        """The oldest sealed chunk (removed from the buffer), or None."""
        if not self.sealed:
            return None
        chunk = self.sealed.popleft()
        self.count -= len(chunk)
        return chunk

    def putBack(self, *chunks):
        """Chunks that must go before everything else (kept for a retry, or split), in the
        order given."""
        for chunk in reversed(chunks):
            self.sealed.appendleft(chunk)
            self.count += len(chunk)
        if self.count > self.limit:
            self.makeRoom()

    def takeAll(self):
        """Every chunk, oldest first (the open one sealed); the buffer is left empty."""
        self.seal()
        chunks = list(self.sealed)
        self.sealed.clear()
        self.count = 0
        return chunks
