"""What a rollup holds (count, sum, min, max, non-zero count and a quantile sketch) and how
rollups and raw values combine into the numbers of a range.

The sketch is a t-digest (``fastdigest``, in Rust; chosen by measurement over DDSketch and
DataSketches' KLL: see docs/benchmarks.rst) of at most :data:`MAX_CENTROIDS` centroids. A
part with few values keeps the values themselves instead (8 bytes each: smaller than their
digest), so that a range of few values is computed exactly, as from raw points: the median
is the middle value (the mean of the two middle ones), the 90th percentile the nearest-rank
one. A range of more values is computed from the merged digests.

Shared by the writer (:mod:`~buildbot_stats.storage.sqlite.rollups`) and the reader
(:mod:`buildbot_stats.reading.sqlite`).
"""

from __future__ import annotations

import math
import statistics
import struct

from fastdigest import TDigest

#: Centroids of a t-digest: measured within 0.5 % of the exact median and 90th percentile on
#: the benchmark data (docs/benchmarks.rst), 16 bytes each.
MAX_CENTROIDS = 300
#: A sketch of at most this many values stores the values.
EXACT_VALUES = 300
#: A range of at most this many values (every part exact) is computed exactly.
EXACT_LIMIT = 2000

#: The first byte of a sketch that stores the values (then little-endian doubles), and of
#: one that stores a t-digest.
VALUES_SKETCH, DIGEST_SKETCH = b'V', b'T'


def encodeSketch(values):
    """The stored sketch of ``values`` (a list of numbers, not empty)."""
    if len(values) <= EXACT_VALUES:
        return VALUES_SKETCH + struct.pack(f'<{len(values)}d', *values)
    return DIGEST_SKETCH + TDigest.from_values(values, max_centroids=MAX_CENTROIDS).to_bytes()


def decodeSketch(blob):
    """``(values, None)`` or ``(None, digest)`` of a stored sketch."""
    if blob[:1] == VALUES_SKETCH:
        return struct.unpack_from(f'<{(len(blob) - 1) // 8}d', blob, 1), None
    return None, TDigest.from_bytes(blob[1:])


def nearestRank(ordered, q):
    """The nearest-rank ``q`` quantile of sorted values (a value that occurred)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Quantiles:
    """The values (while few) or the merged digest of several parts."""

    __slots__ = ('values', 'digest')

    def __init__(self):
        self.values = []
        self.digest = None

    def addValues(self, values):
        self.values.extend(values)
        if len(self.values) > EXACT_LIMIT:
            self._fold()

    def addSketch(self, blob):
        values, digest = decodeSketch(blob)
        if values is not None:
            self.addValues(values)
            return
        if self.digest is None:
            self.digest = digest
        else:
            self.digest.merge_inplace(digest)

    def addWeighted(self, values, weights):
        """Add a distribution known by weighted values (an estimate: no longer exact)."""
        if not values:
            return
        digest = TDigest.from_values(values, w=weights, max_centroids=MAX_CENTROIDS)
        if self.digest is None:
            self.digest = digest
        else:
            self.digest.merge_inplace(digest)

    def merge(self, other):
        if other.digest is not None:
            if self.digest is None:
                self.digest = other.digest.copy()
            else:
                self.digest.merge_inplace(other.digest)
        self.addValues(other.values)

    def _fold(self):
        if self.values:
            digest = TDigest.from_values(self.values, max_centroids=MAX_CENTROIDS)
            if self.digest is None:
                self.digest = digest
            else:
                self.digest.merge_inplace(digest)
            self.values = []

    @property
    def exact(self):
        return self.digest is None

    def encoded(self):
        """The stored sketch of everything added (None when nothing was)."""
        if self.digest is None:
            return encodeSketch(self.values) if self.values else None
        self._fold()
        return DIGEST_SKETCH + self.digest.to_bytes()

    def medianAndP90(self):
        """``(median, p90)``; None for no value."""
        if self.digest is None:
            if not self.values:
                return None, None
            ordered = sorted(self.values)
            return statistics.median(ordered), nearestRank(ordered, 0.9)
        self._fold()
        return self.digest.quantile(0.5), self.digest.quantile(0.9)


class Aggregate:
    """Count, sum, min, max, non-zero count and (optionally) quantiles of numbers: one
    rollup row, or the combination of rows and raw values."""

    __slots__ = ('count', 'sum', 'min', 'max', 'nonzero', 'quantiles')

    def __init__(self, sketched=True):
        self.count = 0
        self.sum = 0
        self.min = self.max = None
        self.nonzero = 0
        self.quantiles = Quantiles() if sketched else None

    def addValues(self, values):
        """Add raw numbers (a list)."""
        if not values:
            return
        self.count += len(values)
        self.sum += sum(values)
        lo, hi = min(values), max(values)
        self.min = lo if self.min is None or lo < self.min else self.min
        self.max = hi if self.max is None or hi > self.max else self.max
        self.nonzero += len(values) - values.count(0)
        if self.quantiles is not None:
            self.quantiles.addValues(values)

    def addRow(self, count, total, lo, hi, nonzero, sketch):
        """Add a stored rollup row (``total`` and the rest None for a count only)."""
        self.count += count
        if total is not None:
            self.sum += total
            self.min = lo if self.min is None or lo < self.min else self.min
            self.max = hi if self.max is None or hi > self.max else self.max
            self.nonzero += nonzero
        if self.quantiles is not None and sketch is not None:
            self.quantiles.addSketch(sketch)

    def merge(self, other):
        self.addRow(other.count, other.sum if other.min is not None else None, other.min,
                    other.max, other.nonzero, None)
        if self.quantiles is not None and other.quantiles is not None:
            self.quantiles.merge(other.quantiles)

    def row(self):
        """``(count, sum, min, max, nonzero, sketch)`` to store."""
        sketch = None if self.quantiles is None else self.quantiles.encoded()
        if self.min is None:
            return (self.count, None, None, None, None, sketch)
        return (self.count, self.sum, self.min, self.max, self.nonzero, sketch)
