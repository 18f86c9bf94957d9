"""The per-test history's writes in the embedded store: one build's test results as a run and
its rows (schema v4's ``test_runs``, ``test_names``, ``test_results``), and their retention.

Runs in the writer's thread (:class:`~buildbot_stats.storage.sqlite.writer.StoreWriter`) and
in ``buildbot-stats prune``; nothing here runs on the reactor thread. The test results are
raw history kept beside the points, never rolled up (:mod:`.rollups` reads only ``points``).
"""

from __future__ import annotations

import sqlite3

from buildbot_stats.outcomes import countOutcomes
from buildbot_stats.storage.sqlite.schema import NAME_BITS
from buildbot_stats.storage.sqlite.schema import NAME_MASK
from buildbot_stats.storage.sqlite.schema import hasTable

# one build's test results (CaptureTestHistory): a build written again replaces its run
RUN_OF = "SELECT id FROM test_runs WHERE builder = ? AND build_number = ?"
INSERT_RUN = (
    "INSERT INTO test_runs (builder, build_number, buildid, time_us, revision, buildset,"
    " branch, passed, failed, skipped, flaky) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_RESULT = "INSERT INTO test_results (id, outcome, duration_us) VALUES (?, ?, ?)"
# test names kept in the writer's memory (name -> id), to spare a look-up per result
MAX_CACHED_NAMES = 300_000
# names looked up per statement
NAME_CHUNK = 500
#: Test results (and runs) deleted per transaction by retention: as the raw points'
#: (:data:`.retention.BATCH`), so the master's writer waits at most one batch.
BATCH = 2000


class StoreFull(sqlite3.OperationalError):
    """The store holds as many test names as a result's row id can tell apart."""


def _resultRange(run_id):
    first = run_id << NAME_BITS
    return first, first | NAME_MASK


def writeRun(conn, run, cases, name_ids):
    """One build's test results, inside the caller's transaction; a build written before (a
    backfill, a catch-up) has its results replaced. ``name_ids`` is the writer's cache of
    ``{name: test_names.id}``. Returns the number of results."""
    found = conn.execute(RUN_OF, (run.builder, run.build_number)).fetchone()
    if found is not None:
        # written again under a new id: its results go to the end of the table (full
        # pages), and readers see the runs change (StoreReader.testsStateKey)
        conn.execute("DELETE FROM test_results WHERE id BETWEEN ? AND ?",
                     _resultRange(found[0]))
        conn.execute("DELETE FROM test_runs WHERE id = ?", (found[0],))
    passed, failed, skipped, flaky = countOutcomes(cases)
    run_id = conn.execute(INSERT_RUN, (
        run.builder, run.build_number, run.buildid, round(run.time * 1_000_000),
        run.revision, run.buildset, run.branch, passed, failed, skipped,
        flaky)).lastrowid
    ids = nameIds(conn, [name for name, _, _ in cases], name_ids)
    base = run_id << NAME_BITS
    rows = sorted(
        (base | ids[name], outcome,
         None if duration is None else round(duration * 1_000_000))
        for name, outcome, duration in cases)
    conn.executemany(INSERT_RESULT, rows)
    return len(rows)


def nameIds(conn, names, cache):
    """``cache`` (``{name: test_names.id}``) holding ``names``, the new ones added."""
    missing = [n for n in set(names) if n not in cache]
    if len(cache) + len(missing) > MAX_CACHED_NAMES:
        cache.clear()
        missing = list(set(names))
    for i in range(0, len(missing), NAME_CHUNK):
        chunk = missing[i:i + NAME_CHUNK]
        marks = ','.join('?' * len(chunk))
        for name_id, name in conn.execute(
                f"SELECT id, name FROM test_names WHERE name IN ({marks})", chunk):
            cache[name] = name_id
    for name in missing:
        if name not in cache:
            name_id = conn.execute("INSERT INTO test_names (name) VALUES (?)",
                                   (name,)).lastrowid
            if name_id > NAME_MASK:
                raise StoreFull(f"more than {NAME_MASK} test names")
            cache[name] = name_id
    return cache


# -- retention ---------------------------------------------------------------------------

def _hasTests(conn):
    return hasTable(conn, 'test_runs')


def deleteBatch(conn, cutoff_us, batch=BATCH):
    """One transaction deleting at most ``batch`` rows (results, then their run) of the
    builds that ended before ``cutoff_us`` (microseconds), oldest first; how many went.

    A run's row goes in the transaction that deletes its last result, so a kill midway
    leaves the run with part of its results (older than the cutoff, finished by the next
    round), never results without their run."""
    if not _hasTests(conn):
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        left = batch
        runs = conn.execute(
            "SELECT id FROM test_runs WHERE time_us < ? ORDER BY time_us, id LIMIT ?",
            (cutoff_us, batch)).fetchall()
        for (run_id,) in runs:
            first, last = _resultRange(run_id)
            gone = conn.execute(
                "DELETE FROM test_results WHERE id IN (SELECT id FROM test_results"
                " WHERE id BETWEEN ? AND ? LIMIT ?)", (first, last, left)).rowcount
            left -= gone
            if left <= 0 and conn.execute(
                    "SELECT 1 FROM test_results WHERE id BETWEEN ? AND ? LIMIT 1",
                    (first, last)).fetchone():
                break
            conn.execute("DELETE FROM test_runs WHERE id = ?", (run_id,))
            left -= 1
            if left <= 0:
                break
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return batch - max(left, 0)


def count(conn, cutoff_us):
    """``(runs, results)`` of the builds that ended before ``cutoff_us`` (microseconds)."""
    if not _hasTests(conn):
        return 0, 0
    runs, results = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(passed + failed + skipped + flaky), 0) FROM test_runs"
        " WHERE time_us < ?", (cutoff_us,)).fetchone()
    return runs, results
