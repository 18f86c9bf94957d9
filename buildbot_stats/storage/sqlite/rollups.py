"""The rollups of the embedded store: per series, group and field, per hour and per day, the
count, sum, min, max, non-zero count and quantile sketch of the values, kept beside the raw
points so that a range of months is read from a few hundred rows.

Rules (docs/storage-sqlite.rst, "Rollups"):

* a **group** is the series and the tags of :func:`groupTags` (the builder; the step of a
  ``steps`` point; the result of a ``builds`` point), stored as a tag set;
* every numeric field is rolled up but the identifiers of :data:`NOT_ROLLED`; the pseudo
  field ``''`` counts the points; a sketch is kept for the fields whose quantiles the page
  shows (every field but those of :data:`COUNTED_ONLY`'s measurements);
* hours are rolled up once closed: when the clock passes their end by :data:`GRACE`. The
  store's ``rollup_watermark`` (meta) is the first hour not rolled up: readers read raw
  points from there on, and for the hours listed in ``rollup_dirty`` (a point written into
  an hour already rolled up: late, or written again), which are rolled up again from the
  raw points at the next maintenance;
* a day is rolled up from its hours once all are closed;
* points older than ``raw_since`` (meta: retention deleted the raw points before it) change
  no rollup: their hours are summarized already (a replay of old builds, such as
  ``buildbot-stats backfill``, must not count them twice).

Maintenance runs in the writer's thread (:class:`~buildbot_stats.storage.sqlite.writer.StoreWriter`),
or in a command (``buildbot-stats prune``, ``rebuild-rollups``) on the same file: every
step is a transaction, and the state lives in the file, so that two programs and a crash
agree.
"""

from __future__ import annotations

import collections
import json

from buildbot_stats.storage.sqlite.aggregates import Aggregate
from buildbot_stats.storage.sqlite.layout import tagsJson

HOUR = 3600
DAY = 86400
LEVELS = (HOUR, DAY)
#: An hour is rolled up this many seconds after its end: the points of a build come a
#: little after the build's end time (its last step, a slow capture).
GRACE = 600
#: Fields that identify rather than measure: not rolled up.
NOT_ROLLED = frozenset({'build_number', 'step_number', 'result_code'})
#: Measurements whose fields are counted and summed, never shown as quantiles: no sketch.
COUNTED_ONLY = frozenset({'builds', 'tests'})
#: The tags that make a group, by measurement (others: the builder only).
GROUP_TAGS = {'builds': ('builder_name', 'result'), 'steps': ('builder_name', 'step_name')}
DEFAULT_GROUP_TAGS = ('builder_name',)
#: Hours rolled up from raw points per maintenance transaction (the writer's points wait
#: meanwhile).
HOURS_PER_STEP = 24

US = 1_000_000


def groupTags(series, tags):
    keys = GROUP_TAGS.get(series, DEFAULT_GROUP_TAGS)
    return {k: tags[k] for k in keys if k in tags}


def hourOf(time_us):
    return time_us // (HOUR * US) * HOUR


def isNumber(v):
    return type(v) in (int, float)


class State:
    """What the file says about its rollups: the first hour not rolled up, the time before
    which raw points were deleted (microseconds), the hours to roll up again."""

    def __init__(self, watermark, raw_since):
        self.watermark, self.raw_since = watermark, raw_since

    @classmethod
    def read(cls, conn):
        meta = dict(conn.execute(
            "SELECT key, value FROM meta WHERE key IN ('rollup_watermark', 'raw_since')"))
        return cls(int(meta.get('rollup_watermark', 0)), int(meta.get('raw_since', 0)))

    @staticmethod
    def write(conn, key, value):
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))


def dirtyHours(conn, before=None):
    sql = "SELECT hour FROM rollup_dirty"
    if before is not None:
        sql += f" WHERE hour < {int(before)}"
    return [r[0] for r in conn.execute(sql + " ORDER BY hour")]


class HourAccumulator:
    """The points of one hour, grouped: ``{(series id, group tag set id, field): values}``
    and ``{(series id, group tag set id): count}``."""

    def __init__(self):
        self.values = collections.defaultdict(list)
        self.counts = collections.Counter()

    def add(self, sid, gid, fields):
        self.counts[(sid, gid)] += 1
        values = self.values
        for name, v in fields.items():
            if type(v) in (int, float) and name not in NOT_ROLLED:
                values[(sid, gid, name)].append(v)

    def rows(self, start, series_names):
        """The rollup rows of the hour starting at ``start``."""
        for (sid, gid), n in self.counts.items():
            yield (sid, HOUR, start, gid, '', n, None, None, None, None, None)
        for (sid, gid, name), vs in self.values.items():
            agg = Aggregate(sketched=series_names[sid] not in COUNTED_ONLY)
            agg.addValues(vs)
            yield (sid, HOUR, start, gid, name, *agg.row())


INSERT_ROLLUP = ("INSERT OR REPLACE INTO rollups (series, level, start, tagset, field, count,"
                 " sum, min, max, nonzero, sketch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class Rollups:
    """The rollup maintenance of one connection (the writer's, or a command's).

    The writer hands the points it commits to :meth:`written`: points of hours not yet
    rolled up wait in memory (a list per hour) until their hour closes, so that closing an
    hour reads nothing back; an hour whose points are not all in memory (written before the
    writer opened the file, or written again) is rolled up from the raw points.
    """

    def __init__(self, names):
        self.names = names  # layout.Names of the connection
        self.pending = {}  # hour -> [(series id, tag set id, fields)]
        self.from_raw = set()  # hours >= watermark to roll up from the raw points
        self.watermark = None  # as last read from the file
        self.group_ids = {}  # (series id, tag set id) -> group tag set id
        self.tagsets = {}  # tag set id -> tags (decoded, for the raw path)
        self.fieldsets = {}
        self.series_names = {}
        self.hours_rolled = 0  # hours rolled up by this connection (for the commands)

    # -- the state --------------------------------------------------------------------------

    def opened(self, conn):
        """After the connection opened the file: every hour not rolled up that already
        holds points is rolled up from the raw points."""
        state = State.read(conn)
        self.watermark = state.watermark
        self.pending.clear()
        self.from_raw = set(self._rawHours(conn, state.watermark * US))

    def _rawHours(self, conn, since_us, before_us=None):
        hours = set()
        for (sid,) in conn.execute("SELECT id FROM series").fetchall():
            sql = ("SELECT DISTINCT time_us / ? FROM points WHERE series = ? AND time_us >= ?")
            params = [HOUR * US, sid, since_us]
            if before_us is not None:
                sql += " AND time_us < ?"
                params.append(before_us)
            hours.update(h * HOUR for (h,) in conn.execute(sql, params))
        return hours

    def _sync(self, state):
        """Another program (a command) may have moved the watermark: what it rolled up is
        no longer pending here."""
        if state.watermark != self.watermark:
            self.watermark = state.watermark
            for h in [h for h in self.pending if h < state.watermark]:
                del self.pending[h]
            self.from_raw = {h for h in self.from_raw if h >= state.watermark}

    def groupId(self, conn, sid, tid, series, tags):
        key = (sid, tid)
        gid = self.group_ids.get(key)
        if gid is None:
            group = groupTags(series, tags)
            gid = self.names.tagsetId(conn, tagsJson(group), group.get('builder_name'))
            self.group_ids[key] = gid
        return gid

    def forget(self):
        """After a rollback: ids added in it do not exist."""
        self.group_ids.clear()

    # -- points written ---------------------------------------------------------------------

    def writing(self, conn, points, replaced):
        """In the writer's transaction, after its points were inserted: ``points`` are
        ``(series name, series id, time_us, tag set id, tags, fields)``; ``replaced``: some
        replaced points already stored. Marks the rolled-up hours the points fall in as
        dirty; returns what :meth:`written` keeps once the transaction is committed."""
        state = State.read(conn)
        self._sync(state)
        wm_us, raw_since = state.watermark * US, state.raw_since
        keep = collections.defaultdict(list)
        dirty = set()
        for series, sid, t, tid, tags, fields in points:
            if t >= wm_us:
                keep[hourOf(t)].append((sid, self.groupId(conn, sid, tid, series, tags), fields))
            elif t >= raw_since:
                dirty.add(hourOf(t))
        if dirty:
            conn.executemany("INSERT OR IGNORE INTO rollup_dirty (hour) VALUES (?)",
                             [(h,) for h in dirty])
        return keep, replaced

    def written(self, kept):
        """After the commit: the points of the open hours wait for their hour to close."""
        keep, replaced = kept
        for hour, entries in keep.items():
            if replaced:
                # a point written again: the hour's list would count it twice
                self.from_raw.add(hour)
                self.pending.pop(hour, None)
            elif hour not in self.from_raw:
                self.pending.setdefault(hour, []).extend(entries)

    # -- maintenance --------------------------------------------------------------------------

    def maintain(self, conn, now, max_hours=HOURS_PER_STEP):
        """One step of maintenance in one transaction (``conn`` in autocommit mode): close
        the hours whose end is more than :data:`GRACE` ago, roll up the dirty hours again,
        then the days they complete. At most ``max_hours`` hours are read from raw points;
        True when more remains."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            more = self._maintain(conn, now, max_hours)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self.forget()
            self.names.forget()
            raise
        self.names.committed()
        return more

    def _loadNames(self, conn):
        self.series_names = dict(conn.execute("SELECT id, name FROM series"))
        self.tagsets = {i: json.loads(t) for i, t in conn.execute("SELECT id, tags FROM tagsets")}
        self.fieldsets = {i: json.loads(n)
                          for i, n in conn.execute("SELECT id, names FROM fieldsets")}

    def _maintain(self, conn, now, max_hours):
        state = State.read(conn)
        self._sync(state)
        self._loadNames(conn)
        target = int((now - GRACE) // HOUR * HOUR)
        budget = max_hours
        days = set()  # the days whose hours changed
        wm = state.watermark
        if target > wm:
            if wm == 0:
                # a store never rolled up: from its first point on
                first = self._firstTime(conn)
                wm = target if first is None else min(target, hourOf(first))
            start = wm
            while wm < target:
                if wm in self.from_raw:
                    if budget <= 0:
                        break
                    budget -= 1
                    self._fromRaw(conn, wm)
                    self.from_raw.discard(wm)
                elif wm in self.pending:
                    self._write(conn, wm, self._accumulate(self.pending.pop(wm)))
                else:
                    # no point in this hour: on to the next that holds some
                    wm = min([h for h in (*self.from_raw, *self.pending) if h > wm] + [target])
                    continue
                days.add(wm // DAY * DAY)
                wm += HOUR
            State.write(conn, 'rollup_watermark', wm)
            self.watermark = wm
            # every day whose end the watermark passed is complete now
            days.update(d for d in range(start // DAY * DAY, wm, DAY)
                        if state.watermark < d + DAY <= wm)
        # the hours written into after they were rolled up
        for hour in dirtyHours(conn, before=self.watermark):
            if budget <= 0:
                break
            budget -= 1
            if hour * US >= state.raw_since:
                self._fromRaw(conn, hour)
            conn.execute("DELETE FROM rollup_dirty WHERE hour = ?", (hour,))
            days.add(hour // DAY * DAY)
        for day in sorted(days):
            if day + DAY <= self.watermark:
                self._rollDay(conn, day)
        return self.watermark < target or bool(dirtyHours(conn, before=self.watermark))

    def _firstTime(self, conn):
        firsts = [conn.execute("SELECT MIN(time_us) FROM points WHERE series = ?",
                               (sid,)).fetchone()[0] for sid in self.series_names]
        firsts = [t for t in firsts if t is not None]
        return min(firsts) if firsts else None

    def _accumulate(self, entries):
        acc = HourAccumulator()
        for sid, gid, fields in entries:
            acc.add(sid, gid, fields)
        return acc

    def _fromRaw(self, conn, hour):
        """Roll up the hour starting at ``hour`` from its raw points."""
        acc = HourAccumulator()
        lo, hi = hour * US, (hour + HOUR) * US
        for sid, series in self.series_names.items():
            rows = conn.execute("SELECT tagset, fieldset, vals FROM points WHERE series = ?"
                                " AND time_us >= ? AND time_us < ?", (sid, lo, hi)).fetchall()
            for tid, fid, vals in rows:
                gid = self.groupId(conn, sid, tid, series, self.tagsets[tid])
                acc.add(sid, gid, dict(zip(self.fieldsets[fid], json.loads(vals))))
        self._write(conn, hour, acc)

    def _write(self, conn, hour, acc):
        self.hours_rolled += 1
        conn.execute("DELETE FROM rollups WHERE level = ? AND start = ?", (HOUR, hour))
        conn.executemany(INSERT_ROLLUP, acc.rows(hour, self.series_names))

    def _rollDay(self, conn, day):
        """The day starting at ``day`` from its hours' rows."""
        merged = {}
        rows = conn.execute("SELECT series, tagset, field, count, sum, min, max, nonzero, sketch"
                            " FROM rollups WHERE level = ? AND start >= ? AND start < ?",
                            (HOUR, day, day + DAY))
        for sid, gid, field, *values in rows:
            key = (sid, gid, field)
            agg = merged.get(key)
            if agg is None:
                agg = merged[key] = Aggregate(sketched=values[-1] is not None)
            agg.addRow(*values)
        conn.execute("DELETE FROM rollups WHERE level = ? AND start = ?", (DAY, day))
        conn.executemany(INSERT_ROLLUP, [
            (sid, DAY, day, gid, field, *agg.row())
            for (sid, gid, field), agg in merged.items()])

    # -- rebuilding ----------------------------------------------------------------------------

    def markForRebuild(self, conn, since=None):
        """Every rolled-up hour holding raw points (from ``since``, seconds) becomes dirty:
        the next maintenance steps roll them up again. Returns how many."""
        state = State.read(conn)
        lo = max(state.raw_since, 0 if since is None else int(since * US))
        hours = self._rawHours(conn, lo, state.watermark * US)
        # hours with rollups but no raw point left (their points deleted by hand) too
        rows = conn.execute("SELECT DISTINCT start FROM rollups WHERE level = ? AND start >= ?"
                            " AND start < ?", (HOUR, lo // US, state.watermark)).fetchall()
        hours.update(h for (h,) in rows if h * US >= state.raw_since)
        conn.executemany("INSERT OR IGNORE INTO rollup_dirty (hour) VALUES (?)",
                         [(h,) for h in sorted(hours)])
        return len(hours)
