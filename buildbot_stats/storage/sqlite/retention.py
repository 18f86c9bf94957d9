"""Retention of the embedded store: raw points older than a cutoff deleted in small batches,
each its own transaction, and rollups older than theirs.

Used by the writer's maintenance (``SQLiteStorageService(keep=..., keep_rollups=...)``) and
by ``buildbot-stats prune``. Safe to stop at any moment (a crash, a kill) and to run again:

1. the cutoff never passes what the rollups summarize (the rollup watermark, the first hour
   still to be rolled up again), so no deleted point is missing from the rollups;
2. ``raw_since`` is moved to the cutoff in its own transaction *before* any point goes, so
   a reader never takes a range with deleted points for complete raw points, and a point
   written later before it changes no rollup;
3. then batches of :data:`BATCH` points are deleted, a transaction each, so that the
   master's writer waits at most one batch for the file.
"""

from __future__ import annotations

from buildbot_stats.storage.sqlite.rollups import DAY
from buildbot_stats.storage.sqlite.rollups import WEEK
from buildbot_stats.storage.sqlite.rollups import GRACE
from buildbot_stats.storage.sqlite.rollups import HOUR
from buildbot_stats.storage.sqlite.rollups import LEVELS
from buildbot_stats.storage.sqlite.rollups import US
from buildbot_stats.storage.sqlite.rollups import State
from buildbot_stats.storage.sqlite.rollups import dirtyHours
from buildbot_stats.storage.sqlite.schema import hasTable

#: Points deleted per transaction.
BATCH = 2000


def rawCutoff(conn, older_than, now):
    """The time (seconds, a whole hour) before which raw points may go: ``now -
    older_than`` rounded down to the hour, no later than the rollup watermark and the first
    hour to roll up again, nor inside a raw-only day (:mod:`.rollups`)."""
    state = State.read(conn)
    cutoff = int((now - older_than) // HOUR * HOUR)
    dirty = dirtyHours(conn)
    return _outsideRawOnlyDays(conn, min([cutoff, state.watermark] + dirty[:1]))


def _outsideRawOnlyDays(conn, cutoff):
    """``cutoff``, or the start of the raw-only day it falls in: such a day keeps its raw
    points whole (a late point rolls the whole day up again from them) or loses them
    whole. (A store of version 4, read by ``prune --dry-run``, has none.)"""
    day = cutoff // DAY * DAY
    if cutoff != day and hasTable(conn, 'rollup_raw_days') and conn.execute(
            "SELECT 1 FROM rollup_raw_days WHERE day = ?", (day,)).fetchone():
        return day
    return cutoff


def plannedCutoff(conn, older_than, now):
    """The cutoff :func:`rawCutoff` gives once the rollups are brought up to date at
    ``now`` (what ``prune`` does first): ``now - older_than`` rounded down to the hour, no
    later than the last hour the rollups may close (:data:`~.rollups.GRACE`), nor inside a
    raw-only day. Reads only."""
    return _outsideRawOnlyDays(conn, int(min(now - older_than, now - GRACE) // HOUR * HOUR))


def rollupCutoff(now, older_than):
    """The time before which rollups may go: whole weeks (of the rollups, starting on
    multiples of 7 days since the epoch), so that a week's or a day's rollup never goes
    while the finer ones in it stay."""
    return int((now - older_than) // WEEK * WEEK)


def _transaction(conn, work):
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return result


def moveRawSince(conn, cutoff):
    """Record that raw points before ``cutoff`` (seconds) are going (never moves back)."""
    def work():
        state = State.read(conn)
        if cutoff * US > state.raw_since:
            State.write(conn, 'raw_since', cutoff * US)
    _transaction(conn, work)


def seriesIds(conn):
    return [r[0] for r in conn.execute("SELECT id FROM series ORDER BY id")]


def deleteRawBatch(conn, cutoff, batch=BATCH):
    """One transaction deleting at most ``batch`` raw points older than ``cutoff``
    (seconds); how many went."""
    def work():
        left = batch
        for sid in seriesIds(conn):
            cur = conn.execute(
                "DELETE FROM points WHERE id IN (SELECT id FROM points WHERE series = ?"
                " AND time_us < ? LIMIT ?)", (sid, cutoff * US, left))
            left -= cur.rowcount
            if left <= 0:
                break
        return batch - left
    return _transaction(conn, work)


def deleteRollupsBatch(conn, cutoff, batch=BATCH):
    """One transaction deleting at most ``batch`` rollup rows (hours and days) starting
    before ``cutoff`` (seconds), and with the last one the raw-only days before it; how
    many rows went."""
    def work():
        left = batch
        for sid in seriesIds(conn):
            for level in LEVELS:
                cur = conn.execute(
                    "DELETE FROM rollups WHERE (series, level, start, tagset, field) IN"
                    " (SELECT series, level, start, tagset, field FROM rollups"
                    " WHERE series = ? AND level = ? AND start < ? LIMIT ?)",
                    (sid, level, cutoff, left))
                left -= cur.rowcount
                if left <= 0:
                    return batch
        # the last batch: the raw-only days before the cutoff have no rows left
        conn.execute("DELETE FROM rollup_raw_days WHERE day < ?", (cutoff,))
        return batch - left
    return _transaction(conn, work)


def countRaw(conn, cutoff):
    """How many raw points are older than ``cutoff`` (seconds)."""
    return sum(conn.execute("SELECT COUNT(*) FROM points WHERE series = ? AND time_us < ?",
                            (sid, cutoff * US)).fetchone()[0] for sid in seriesIds(conn))


def countRollups(conn, cutoff):
    return conn.execute("SELECT COUNT(*) FROM rollups WHERE start < ?", (cutoff,)).fetchone()[0]


def pruneSteps(conn, now, keep=None, keep_rollups=None, max_batches=10):
    """At most ``max_batches`` batches of the retention due at ``now`` (``keep``,
    ``keep_rollups``: seconds or None); True when more remains."""
    done = 0
    if keep is not None:
        cutoff = rawCutoff(conn, keep, now)
        moveRawSince(conn, cutoff)
        while done < max_batches:
            done += 1
            if deleteRawBatch(conn, cutoff) < BATCH:
                break
        else:
            return True
    if keep_rollups is not None:
        cutoff = rollupCutoff(now, keep_rollups)
        while done < max_batches:
            done += 1
            if deleteRollupsBatch(conn, cutoff) < BATCH:
                return False
        return True
    return False


#: A raw point's build number: its ``build_number`` tag (the ``build`` column), else its
#: ``build_number`` field (``StatsService(build_number='field')``, the build statistics).
BUILD_OF = ("COALESCE(NULLIF(p.build, -1), (SELECT CAST(json_extract(p.vals, '$[' || k.key"
            " || ']') AS INTEGER) FROM fieldsets AS f, json_each(f.names) AS k"
            " WHERE f.id = p.fieldset AND k.value = 'build_number'))")


def builds(conn):
    """``(builder, build number)`` of every build with raw points (the build number a tag
    or a field)."""
    return conn.execute(
        f"SELECT DISTINCT t.builder, {BUILD_OF} AS number FROM points AS p JOIN tagsets AS t"
        " ON t.id = p.tagset WHERE t.builder IS NOT NULL AND number IS NOT NULL").fetchall()


def deleteBuilds(conn, pairs):
    """In one transaction, delete the raw points of the builds ``(builder, build number)``
    (the build number a tag or a field); their hours already rolled up are rolled up again
    at the next maintenance."""
    def work():
        state = State.read(conn)
        for builder, number in pairs:
            ids = [r[0] for r in conn.execute(
                f"SELECT p.id FROM points AS p JOIN tagsets AS t ON t.id = p.tagset"
                f" WHERE t.builder = ? AND {BUILD_OF} = ?", (builder, number))]
            for k in range(0, len(ids), 500):
                chunk = ids[k:k + 500]
                marks = ','.join('?' * len(chunk))
                conn.execute(
                    "INSERT OR IGNORE INTO rollup_dirty (hour) SELECT DISTINCT time_us / ? * ?"
                    f" FROM points WHERE id IN ({marks}) AND time_us < ? AND time_us >= ?",
                    (HOUR * US, HOUR, *chunk, state.watermark * US, state.raw_since))
                conn.execute(f"DELETE FROM points WHERE id IN ({marks})", chunk)
    _transaction(conn, work)
