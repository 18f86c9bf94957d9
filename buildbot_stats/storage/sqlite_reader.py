"""Reading the embedded store: the one read API of ``buildbot-stats report`` and ``export``.

Opens the file read-only, so it is safe while a master writes it (WAL mode lets readers
and the writer work at once). Every problem with the file is a :class:`StoreError` whose
message is one line for a user.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sqlite3
import urllib.parse
from dataclasses import dataclass

from buildbot_stats.point import Point
from buildbot_stats.storage.sqlite_schema import StoreError
from buildbot_stats.storage.sqlite_schema import checkReadable
from buildbot_stats.storage.sqlite_schema import looksLikeSQLite

__all__ = ['StoreError', 'StoreReader', 'SeriesInfo', 'openStore']


@dataclass(frozen=True)
class SeriesInfo:
    name: str
    points: int
    first: float  # seconds since the epoch
    last: float


def openStore(path):
    """A :class:`StoreReader` of ``path``; raises :class:`StoreError` with the reason."""
    return StoreReader(path)


class StoreReader:
    def __init__(self, path):
        self.path = path
        if not os.path.exists(path):
            raise StoreError(f"{path}: no such file")
        if os.path.isdir(path):
            raise StoreError(f"{path}: is a directory, not a store file")
        if not looksLikeSQLite(path):
            raise StoreError(f"{path}: not an SQLite file")
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        try:
            self.conn = sqlite3.connect(uri, uri=True, timeout=5.0)
            self.version = checkReadable(self.conn)
        except StoreError as e:
            raise StoreError(f"{path}: {e}") from None
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot be read: {e}") from None

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _query(self, sql, params=()):
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot be read: {e}") from None

    def series(self):
        """Every series with its number of points and its time range, by name."""
        rows = self._query(
            "SELECT series, COUNT(*), MIN(time_us), MAX(time_us) FROM points"
            " GROUP BY series ORDER BY series"
        )
        return [SeriesInfo(name, n, lo / 1e6, hi / 1e6) for name, n, lo, hi in rows]

    def countPoints(self):
        return self._query("SELECT COUNT(*) FROM points").fetchone()[0]

    def matchSeries(self, patterns):
        """The series names matching ``patterns`` (names or shell globs such as
        ``'alpha-*'``); a pattern that matches nothing raises :class:`StoreError`."""
        names = [s.name for s in self.series()]
        if not patterns:
            return names
        chosen = []
        for pattern in patterns:
            found = fnmatch.filter(names, pattern)
            if not found:
                known = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
                raise StoreError(
                    f"{self.path}: unknown series {pattern!r} (the store has: {known or 'none'})"
                )
            chosen.extend(n for n in found if n not in chosen)
        return sorted(chosen)

    def points(self, series=None, start=None, end=None):
        """The points of ``series`` (a list of names; None: all) with ``start <= time <
        end`` (seconds; None: unbounded), ordered by time."""
        where, params = [], []
        if series is not None:
            if not series:
                return
            where.append(f"series IN ({','.join('?' * len(series))})")
            params.extend(series)
        if start is not None:
            where.append("time_us >= ?")
            params.append(round(start * 1e6))
        if end is not None:
            where.append("time_us < ?")
            params.append(round(end * 1e6))
        sql = "SELECT series, time_us, tags, fields FROM points"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_us, id"
        for series, time_us, tags, fields in self._query(sql, params):
            yield Point(series=series, tags=json.loads(tags), fields=json.loads(fields),
                        time=time_us / 1e6)

    def buildDurations(self):
        """``{builder: [(end time, build number, duration), ...]}`` by time, from the
        ``duration`` field of the ``<builder>-build-times`` series (the first point of each
        build, in the unit it was captured in: seconds by default)."""
        rows = self._query(
            "SELECT builder, build_number, MIN(time_us),"
            " json_extract(fields, '$.duration') FROM points"
            " WHERE series = builder || '-build-times'"
            " AND json_type(fields, '$.duration') IN ('integer', 'real')"
            " GROUP BY builder, build_number ORDER BY builder, MIN(time_us)"
        )
        out = {}
        for builder, number, time_us, duration in rows:
            out.setdefault(builder, []).append((time_us / 1e6, number, float(duration)))
        return out
