"""The layout of the embedded store (an SQLite file), its version and its migrations.

Shared by the writer (:mod:`buildbot_stats.storage.sqlite`) and the readers
(:mod:`buildbot_stats.reading.sqlite`). The layout is documented in
docs/storage-sqlite.rst; change it only by adding a migration below.

Version 1::

    points(id INTEGER PRIMARY KEY, series TEXT, time_us INTEGER, builder TEXT,
           build_number INTEGER, tags TEXT (JSON object), fields TEXT (JSON object))
    meta(key TEXT PRIMARY KEY, value TEXT)      -- schema_version, application, created_by
    VIEW field_values(point_id, series, time_us, builder, build_number, tags, field, value, type)

Version 2: one point per (series, tags, time), as in InfluxDB, so that writing a point again
(a backfill, a catch-up after a crash) replaces it instead of adding a row::

    UNIQUE INDEX points_key ON points (series, time_us, tags)   -- replaces points_series_time

Version 3: a lean layout (interned series, tag sets and field names, the build number as an
integer, no copies: :mod:`~buildbot_stats.storage.sqlite.layout`) and rollups per hour and day
(:mod:`~buildbot_stats.storage.sqlite.rollups`)::

    series(id, name UNIQUE)   tagsets(id, tags UNIQUE (JSON), builder)   fieldsets(id, names UNIQUE)
    points(id INTEGER PRIMARY KEY, series, time_us, tagset, build, fieldset, vals (JSON array))
    UNIQUE INDEX points_key ON points (series, time_us, tagset, build)
    rollups(series, level, start, tagset, field, count, sum, min, max, nonzero, sketch)
    rollup_dirty(hour)
    VIEW points_json (the rows of version 2), VIEW field_values (as in version 1), VIEW rollup_rows

Version 4: the per-test history (:class:`~buildbot_stats.captures.CaptureTestHistory`), in
tables of its own, about 15 bytes per test result::

    test_runs(id INTEGER PRIMARY KEY AUTOINCREMENT, builder TEXT, build_number INTEGER,
              buildid INTEGER,
              time_us INTEGER, revision TEXT, buildset INTEGER, branch TEXT,
              passed INTEGER, failed INTEGER, skipped INTEGER, flaky INTEGER)
        UNIQUE INDEX test_runs_build ON test_runs (builder, build_number)
        INDEX test_runs_time ON test_runs (time_us)
    test_names(id INTEGER PRIMARY KEY, name TEXT UNIQUE)
    test_results(id INTEGER PRIMARY KEY, outcome INTEGER, duration_us INTEGER)
        -- id = test_runs.id << 24 | test_names.id: the row id says whose result it is
        INDEX test_results_failures ON test_results (outcome) WHERE outcome IN (1, 3)
    VIEW test_history(builder, build_number, time_us, name, outcome, duration_us)

Version 5: the raw-only days (a quiet day, rolled up to its day rows directly from the
writer's memory, no hourly rows: :mod:`~buildbot_stats.storage.sqlite.rollups`)::

    rollup_raw_days(day INTEGER PRIMARY KEY)   -- day start, seconds since the epoch

``PRAGMA user_version`` holds the schema version, ``PRAGMA application_id`` marks the file
as ours so that a path pointed at another database (Buildbot's state.sqlite) is refused.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.parse

SCHEMA_VERSION = 5
#: The first version of the layout the readers read (points, rollups); a file of version 3
#: is read as it is (without per-test history) until the master upgrades it.
READABLE_VERSION = 3
#: The first version with the per-test history tables (test_runs, test_names, test_results).
TESTS_VERSION = 4
#: ``test_results.id`` is ``run id << NAME_BITS | name id``: 16.7 million test names.
NAME_BITS = 24
NAME_MASK = (1 << NAME_BITS) - 1
# 'BBST' as a big-endian 32-bit integer: `PRAGMA application_id` of every store.
APPLICATION_ID = 0x42425354
SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(Exception):
    """The file is not a store this version can use; the message says why."""


def _v1(conn):
    conn.execute(
        "CREATE TABLE points ("
        " id INTEGER PRIMARY KEY,"
        " series TEXT NOT NULL,"
        " time_us INTEGER NOT NULL,"  # microseconds since the Unix epoch, UTC
        " builder TEXT,"  # the builder_name tag, copied for easy querying
        " build_number INTEGER,"  # the build_number tag as an integer
        " tags TEXT NOT NULL,"  # JSON object of strings
        " fields TEXT NOT NULL"  # JSON object
        ")"
    )
    conn.execute("CREATE INDEX points_series_time ON points (series, time_us)")
    conn.execute("CREATE INDEX points_builder_time ON points (builder, time_us)")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # one row per field: what a spreadsheet or a dashboard wants
    conn.execute(
        "CREATE VIEW field_values AS"
        " SELECT p.id AS point_id, p.series, p.time_us, p.builder, p.build_number, p.tags,"
        " j.key AS field, j.value AS value, j.type AS type"
        " FROM points AS p, json_each(p.fields) AS j"
    )


def _v2(conn):
    # a v1 file may hold the same point twice (written again after a crash): keep the last
    conn.execute(
        "DELETE FROM points WHERE id NOT IN"
        " (SELECT MAX(id) FROM points GROUP BY series, time_us, tags)"
    )
    conn.execute("DROP INDEX IF EXISTS points_series_time")
    conn.execute("CREATE UNIQUE INDEX points_key ON points (series, time_us, tags)")


def _v3(conn):
    from buildbot_stats.storage.sqlite.layout import Names

    conn.execute("DROP VIEW field_values")
    conn.execute("ALTER TABLE points RENAME TO points_v2")
    conn.execute("DROP INDEX IF EXISTS points_key")
    conn.execute("DROP INDEX IF EXISTS points_builder_time")
    conn.execute("CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    conn.execute("CREATE TABLE tagsets (id INTEGER PRIMARY KEY, tags TEXT NOT NULL UNIQUE,"
                 " builder TEXT)")  # tags: JSON object; builder: its builder_name
    conn.execute("CREATE TABLE fieldsets (id INTEGER PRIMARY KEY, names TEXT NOT NULL UNIQUE)")
    conn.execute(
        "CREATE TABLE points ("
        " id INTEGER PRIMARY KEY,"
        " series INTEGER NOT NULL,"  # series.id
        " time_us INTEGER NOT NULL,"  # microseconds since the Unix epoch, UTC
        " tagset INTEGER NOT NULL,"  # tagsets.id: the tags but a plain build_number
        " build INTEGER NOT NULL,"  # the build_number tag, -1 without one
        " fieldset INTEGER NOT NULL,"  # fieldsets.id: the field names
        " vals TEXT NOT NULL"  # JSON array of the field values
        ")")
    conn.execute("CREATE UNIQUE INDEX points_key ON points (series, time_us, tagset, build)")
    conn.execute(
        "CREATE TABLE rollups ("
        " series INTEGER NOT NULL, level INTEGER NOT NULL, start INTEGER NOT NULL,"
        " tagset INTEGER NOT NULL, field TEXT NOT NULL, count INTEGER NOT NULL,"
        " sum REAL, min REAL, max REAL, nonzero INTEGER, sketch BLOB,"
        " PRIMARY KEY (series, level, start, tagset, field)) WITHOUT ROWID")
    conn.execute("CREATE TABLE rollup_dirty (hour INTEGER PRIMARY KEY)")
    names = Names()
    old = conn.execute("SELECT series, time_us, tags, fields FROM points_v2 ORDER BY id")
    while True:
        rows = old.fetchmany(5000)
        if not rows:
            break
        conn.executemany(
            "INSERT OR REPLACE INTO points (series, time_us, tagset, build, fieldset, vals)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [names.row(conn, series, t, json.loads(tags), json.loads(fields))
             for series, t, tags, fields in rows])
    conn.execute("DROP TABLE points_v2")
    _v3views(conn)
    # nothing is rolled up yet: the writer rolls the file up from its first point on
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                     [('rollup_watermark', '0'), ('raw_since', '0'), ('generation', '0')])


# a field value as JSON (json_each gives 1 and 0 for true and false, and text for nested)
_JSON_VALUE = ("CASE j.type WHEN 'true' THEN json('true') WHEN 'false' THEN json('false')"
               " WHEN 'object' THEN json(j.value) WHEN 'array' THEN json(j.value)"
               " ELSE j.value END")
_TAGS = ("CASE WHEN p.build = -1 THEN t.tags"
         " ELSE json_set(t.tags, '$.build_number', CAST(p.build AS TEXT)) END")
# the build number: the tag's (the build column), else the build_number field's
_BUILD = ("COALESCE(NULLIF(p.build, -1), (SELECT json_extract(p.vals, '$[' || k.key || ']')"
          " FROM json_each(f.names) AS k WHERE k.value = 'build_number'))")
_FROM = ("FROM points AS p JOIN series AS s ON s.id = p.series"
         " JOIN tagsets AS t ON t.id = p.tagset JOIN fieldsets AS f ON f.id = p.fieldset")


def _v3views(conn):
    # the rows of version 2, for other tools
    conn.execute(
        "CREATE VIEW points_json AS SELECT p.id AS id, s.name AS series, p.time_us,"
        " t.builder, " + _BUILD + " AS build_number, " + _TAGS + " AS tags,"
        " (SELECT json_group_object(json_extract(f.names, '$[' || j.key || ']'), "
        + _JSON_VALUE + ") FROM json_each(p.vals) AS j) AS fields " + _FROM)
    # one row per field: what a spreadsheet or a dashboard wants
    conn.execute(
        "CREATE VIEW field_values AS SELECT p.id AS point_id, s.name AS series, p.time_us,"
        " t.builder, " + _BUILD + " AS build_number, " + _TAGS + " AS tags,"
        " json_extract(f.names, '$[' || j.key || ']') AS field, j.value AS value,"
        " j.type AS type " + _FROM + ", json_each(p.vals) AS j")
    conn.execute(
        "CREATE VIEW rollup_rows AS SELECT s.name AS series, r.level, r.start, t.builder,"
        " t.tags, r.field, r.count, r.sum, r.min, r.max, r.nonzero"
        " FROM rollups AS r JOIN series AS s ON s.id = r.series"
        " JOIN tagsets AS t ON t.id = r.tagset")


def _v4(conn):
    # AUTOINCREMENT: a run's id is never given again (its results' row ids derive from it,
    # and a build written again gets a new one: readers see the runs change)
    conn.execute(
        "CREATE TABLE test_runs ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " builder TEXT NOT NULL,"
        " build_number INTEGER NOT NULL,"
        " buildid INTEGER,"
        " time_us INTEGER NOT NULL,"  # the build's end, microseconds since the epoch
        " revision TEXT,"
        " buildset INTEGER,"
        " branch TEXT,"
        " passed INTEGER NOT NULL, failed INTEGER NOT NULL,"
        " skipped INTEGER NOT NULL, flaky INTEGER NOT NULL"
        ")"
    )
    conn.execute("CREATE UNIQUE INDEX test_runs_build ON test_runs (builder, build_number)")
    # retention deletes the runs that ended before its cutoff, oldest first
    conn.execute("CREATE INDEX test_runs_time ON test_runs (time_us)")
    conn.execute("CREATE TABLE test_names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    # one row per test per build; no other column says whose result it is: the row id does
    # (run << NAME_BITS | name), so a build's results are one range of the table, written in
    # order (full pages), and a test's result in a build is one look-up by row id
    conn.execute(
        "CREATE TABLE test_results ("
        " id INTEGER PRIMARY KEY,"
        " outcome INTEGER NOT NULL,"  # 0 passed, 1 failed, 2 skipped, 3 flaky
        " duration_us INTEGER"
        ")"
    )
    # the failures only (a few in a hundred results): the flaky and failing tests' tables
    # start from them
    conn.execute("CREATE INDEX test_results_failures ON test_results (outcome)"
                 " WHERE outcome IN (1, 3)")
    conn.execute(
        "CREATE VIEW test_history AS"
        " SELECT r.builder, r.build_number, r.time_us, n.name, t.outcome, t.duration_us"
        f" FROM test_results AS t JOIN test_runs AS r ON r.id = t.id >> {NAME_BITS}"
        f" JOIN test_names AS n ON n.id = t.id & {NAME_MASK}"
    )


def _v5(conn):
    # the days rolled up to their day rows only (no hourly rows): a reader reads their
    # hours raw, and maintenance never rolls such a day up from its (absent) hours
    conn.execute("CREATE TABLE rollup_raw_days (day INTEGER PRIMARY KEY)")


# MIGRATIONS[n] turns a file at version n - 1 into version n, inside one transaction.
MIGRATIONS = {1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5}


def fileVersion(conn):
    return conn.execute("PRAGMA user_version").fetchone()[0]


def hasTable(conn, name):
    """Whether the file has the table ``name``: a reader or a command may meet a file of an
    older version, which lacks the tables added since."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def _userTables(conn):
    return [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            " AND name NOT LIKE 'sqlite_%'"
        )
    ]


def migrate(conn, target=SCHEMA_VERSION, migrations=None, created_by="buildbot_stats"):
    """Bring the file of ``conn`` (autocommit mode) to version ``target``.

    An empty file is created at ``target``. Every step runs in one transaction, so an
    interrupted upgrade leaves the file at its old version. Raises :class:`StoreError`
    for a file of a newer version or a database that is not a store.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = fileVersion(conn)
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if version == 0 and _userTables(conn):
            raise StoreError(
                "holds tables of another application (is it Buildbot's state.sqlite?); "
                "give the stats store its own file"
            )
        if version > 0 and app_id != APPLICATION_ID:
            raise StoreError("is an SQLite database of another application")
        if version > target:
            raise StoreError(
                f"has schema version {version}, newer than the {target} this buildbot_stats "
                "knows; upgrade buildbot_stats"
            )
        for n in range(version + 1, target + 1):
            migrations[n](conn)
            conn.execute(f"PRAGMA user_version = {int(n)}")
        if version < target:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("application", "buildbot_stats"),
                    ("schema_version", str(target)),
                    ("created_by" if version == 0 else "migrated_by", created_by),
                ],
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def looksLikeSQLite(path):
    """True when ``path`` starts with the SQLite header (False for a missing file)."""
    try:
        with open(path, 'rb') as f:
            return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def storeFileProblem(path):
    """Why ``path`` cannot be a store, before SQLite opens it (one line naming it), or None.
    The reader and the commands that write a store say the same."""
    if not os.path.exists(path):
        return f"{path}: no such file"
    if os.path.isdir(path):
        return f"{path}: is a directory, not a store file"
    if not looksLikeSQLite(path):
        return f"{path}: not an SQLite file"
    return None


#: The files SQLite may keep beside a store whose presence means the file alone is not
#: the whole store: a write-ahead log, a rollback journal.
LOG_SUFFIXES = ('-wal', '-journal')


def connectReadOnly(path, timeout=1.0):
    """A read-only connection to the store ``path`` that never creates a file.

    A reader opens a write-ahead-log store with ``mode=ro``, which reads what the log
    holds but creates the ``-wal`` and ``-shm`` files beside the store when they are not
    there (and then cannot, in a directory it may not write: a backup, a read-only mount,
    a master's directory read by another user). So: with a log or a journal beside the
    store (a master writing it, or one that stopped without checkpointing), ``mode=ro``,
    which reads it; without one, the file is the whole store, and is opened
    ``immutable`` (no lock, no side file; a master that starts writing meanwhile writes
    to a new log, which this connection does not see). Works at any schema version.
    """
    real = os.path.realpath(path)
    logged = any(os.path.exists(base + suffix) for base in {path, real}
                 for suffix in LOG_SUFFIXES)
    query = "mode=ro" if logged else "mode=ro&immutable=1"
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?{query}"
    return sqlite3.connect(uri, uri=True, timeout=timeout)


def isLocked(error):
    """True for SQLite's "database is locked" (another connection holds a lock)."""
    name = getattr(error, 'sqlite_errorname', '')
    return name.startswith(('SQLITE_BUSY', 'SQLITE_LOCKED')) or 'locked' in str(error)


def describeReadError(error):
    """Why a store could not be read, for a user: a lock held by another program is not a
    damaged file."""
    if isLocked(error):
        return ("is locked by another program (one holding an exclusive lock, such as "
                "PRAGMA locking_mode=EXCLUSIVE); try again once it has let go")
    if getattr(error, 'sqlite_errorcode', None) in (sqlite3.SQLITE_READONLY,
                                                     sqlite3.SQLITE_CANTOPEN):
        # a log beside the store needs its -shm index, which this user cannot create
        return (f"cannot be read from here ({error}): its -wal file needs a -shm file "
                "beside it that this user cannot create; read it as the user that writes "
                "it, or copy the store with its -wal file somewhere writable")
    return f"is not a readable SQLite database ({error})"


def checkReadable(conn):
    """Raise :class:`StoreError` unless ``conn`` is a store this version can read."""
    try:
        version = fileVersion(conn)
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise StoreError(describeReadError(e)) from e
    if version == 0 or app_id != APPLICATION_ID:
        raise StoreError("is an SQLite database but not a buildbot_stats store")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"has schema version {version}, newer than the {SCHEMA_VERSION} this "
            "buildbot_stats knows; upgrade buildbot_stats"
        )
    return version
