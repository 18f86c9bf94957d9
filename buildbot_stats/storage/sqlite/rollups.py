"""The rollups of the embedded store: per series, group and field, per hour, day and week,
the count, sum, min, max, non-zero count and quantile sketch of the values, kept beside the
raw points so that a range of months is read from a few hundred rows.

Rules (docs/storage-sqlite.rst, "Rollups"):

* a **group** is the series and the tags of :func:`groupTags` (the builder; the step of a
  ``steps`` point; the result of a ``builds`` point), stored as a tag set;
* the fields rolled up are those the Statistics page reads (:func:`rolledFields`): of the
  build statistics measurements, the ones it shows (the pseudo field ``''`` counts the
  ``builds`` points by result); of every other series, every numeric field but the
  identifiers of :data:`NOT_ROLLED`; a sketch is kept for the fields whose quantiles the page
  shows (not those of :data:`COUNTED_ONLY`'s measurements);
* hours are rolled up once closed: when the clock passes their end by :data:`GRACE`. The
  store's ``rollup_watermark`` (meta) is the first hour not rolled up: readers read raw
  points from there on, and for the hours listed in ``rollup_dirty`` (a point written into
  an hour already rolled up: late, or written again), which are rolled up again from the
  raw points at the next maintenance;
* a day is rolled up from its hours once all are closed, a week from its days;
* a **quiet day** (fewer than :data:`SPARSE_DAY_POINTS` points, all of them written by the
  writer that closes it, none rolled up before) is rolled up to its day rows directly, once
  the day closes, with no hourly rows: a *raw-only day*, listed in ``rollup_raw_days``.
  Readers read its hours raw (or take it whole from its day rows); a point written into it
  later rolls the whole day up again from its raw points (never from its hours: it has
  none); retention keeps or deletes its raw points whole (:mod:`.retention`);
* points older than ``raw_since`` (meta: retention deleted the raw points before it) change
  no rollup: their hours are summarized already (a replay of old builds, such as
  ``buildbot-stats backfill``, must not count them twice);
* a build in both forms of its build number (a tag, then a field after
  ``StatsService(build_number='field')``: the catch-up after the switch writes it again,
  up to a second later; :mod:`buildbot_stats.reading.forms`) counts once, in the tag form:
  the field form's point is stored but not rolled up (:func:`isTwin`).

Maintenance runs in the writer's thread (:class:`~buildbot_stats.storage.sqlite.writer.StoreWriter`),
or in a command (``buildbot-stats prune``, ``rebuild-rollups``) on the same file: every
step is a transaction, and the state lives in the file, so that two programs and a crash
agree.
"""

from __future__ import annotations

import collections
import json
from operator import itemgetter

from buildbot_stats.storage.sqlite import aggregates
from buildbot_stats.storage.sqlite.aggregates import VALUES_SKETCH
from buildbot_stats.storage.sqlite.aggregates import Quantiles
from buildbot_stats.storage.sqlite.aggregates import encodeSketch
from buildbot_stats.storage.sqlite.layout import NO_BUILD
from buildbot_stats.storage.sqlite.layout import tagsJson

HOUR = 3600
DAY = 86400
WEEK = 7 * DAY  # weeks start on multiples of 7 days since the epoch (a Thursday)
LEVELS = (HOUR, DAY, WEEK)
#: An hour is rolled up this many seconds after its end: the points of a build come a
#: little after the build's end time (its last step, a slow capture).
GRACE = 600
#: Fields that identify rather than measure: not rolled up.
NOT_ROLLED = frozenset({'build_number', 'step_number', 'result_code'})
#: The pseudo field of the count of points.
POINTS = ''
#: The end of the name of a ``<builder>-build-times`` series (the seed's captures').
BUILD_TIMES = '-build-times'
#: The series of the change points change detection keeps (docs/regressions.rst): a few
#: records, read as raw points, never rolled up nor counted among the custom series.
CHANGE_POINTS = 'change_points'
#: The fields rolled up of the build statistics measurements (what the page reads), and of
#: the change points (none).
ROLLED = {'builds': (POINTS,), 'build_requests': ('queue_time',), 'steps': ('duration',),
          'tests': ('passed', 'failed', 'skipped'), CHANGE_POINTS: ()}
BUILD_TIMES_FIELDS = ('duration',)
#: Measurements whose fields are counted and summed, never shown as quantiles: no sketch.
COUNTED_ONLY = frozenset({'builds', 'tests'})
#: The tags that make a group, by measurement (others: the builder only).
GROUP_TAGS = {'builds': ('builder_name', 'result'), 'steps': ('builder_name', 'step_name')}
DEFAULT_GROUP_TAGS = ('builder_name',)
#: Hours rolled up from raw points per maintenance transaction (the writer's points wait
#: meanwhile).
HOURS_PER_STEP = 24
#: The master's writer asks for a maintenance when an hour closes; a quiet store's closed
#: hours wait (their points read raw by the page meanwhile, as an open hour's are), so that
#: a transaction closes several at a time, until this many of their points are in memory ...
CLOSE_AT_POINTS = 5000
#: ... or the last maintenance is this old (seconds). A round with nothing due costs no
#: statement (:meth:`Rollups.due`).
MAINTAIN_AT_LEAST_EVERY = 6 * HOUR
#: A day whose points all went through the writer, fewer than this many, is a quiet day:
#: its hours wait in memory until the day closes, and it is rolled up to its day rows only
#: (a closed hour's ~40 rows would each summarize 2-3 values: docs/benchmarks.rst).
SPARSE_DAY_POINTS = 5000

US = 1_000_000


def rolledFields(series):
    """The fields of ``series`` rolled up; None: every numeric one but :data:`NOT_ROLLED`."""
    fields = ROLLED.get(series)
    if fields is None and series.endswith(BUILD_TIMES):
        return BUILD_TIMES_FIELDS
    return fields


#: How far (microseconds) a build's point in the field form may be from its tag form's (the
#: build-number spread of :mod:`buildbot_stats.timestamps`, under a second, and some slack).
TWIN_WINDOW = 1_500_000


def fieldFormBuild(series, build, fields):
    """The build number of a point of a seed capture in the field form (no ``build_number``
    tag, an integer ``build_number`` field), None for any other point."""
    if build != -1 or series in ROLLED:
        return None
    number = fields.get('build_number')
    return number if type(number) is int else None


def isTwin(conn, sid, time_us, builder, number):
    """True when the store has the tag form of this build's point: same series and builder,
    the same build number as a tag, within :data:`TWIN_WINDOW`."""
    return conn.execute(
        "SELECT 1 FROM points WHERE series = ? AND time_us >= ? AND time_us <= ? AND build = ?"
        " AND tagset IN (SELECT id FROM tagsets WHERE builder IS ?) LIMIT 1",
        (sid, time_us - TWIN_WINDOW, time_us + TWIN_WINDOW, number, builder)).fetchone() \
        is not None


def closedBefore(now):
    """The end (seconds) of the hours closed at ``now``: those whose end it passed by
    :data:`GRACE`."""
    return int((now - GRACE) // HOUR * HOUR)


def nextClose(now):
    """The first time after ``now`` (seconds) when an hour closes (its end passed by
    :data:`GRACE`): when the master's timer runs its next round of maintenance."""
    return closedBefore(now) + HOUR + GRACE


def groupTags(series, tags):
    keys = GROUP_TAGS.get(series, DEFAULT_GROUP_TAGS)
    return {k: tags[k] for k in keys if k in tags}


def hourOf(time_us):
    return time_us // (HOUR * US) * HOUR


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


def rawDays(conn):
    """The raw-only days (day starts, a set): rolled up to day rows, with no hourly rows."""
    return {r[0] for r in conn.execute("SELECT day FROM rollup_raw_days")}


def dirtyHours(conn, before=None):
    sql = "SELECT hour FROM rollup_dirty"
    if before is not None:
        sql += f" WHERE hour < {int(before)}"
    return [r[0] for r in conn.execute(sql + " ORDER BY hour")]


# the parts of a prepared row (layout.Names.row) and of a point row the grouping takes
_GROUP_KEY = itemgetter(0, 2, 4)  # (series id, tag set id, field set id)
_FIELDS = itemgetter(3)
_APPEND = list.append


def _consume(iterator):
    collections.deque(iterator, maxlen=0)


class HourAccumulator:
    """The points of one hour (or one quiet day) as the writer committed them, kept until
    the hour closes: their rows and their fields, appended to two flat lists (a C-level
    extend per batch), and grouped when the hour closes, all at once. Grouping batch by
    batch cost as much again at one build a transaction; keeping the points' whole encoded
    rows (their tags) kept more of the writer's objects alive, each touched again cold."""

    __slots__ = ('prepared', 'fields')

    def __init__(self):
        self.prepared = []  # points rows (layout.Names.row)
        self.fields = []  # their fields (dicts)

    @property
    def count(self):
        return len(self.prepared)

    def add(self, prepared, rows):
        """Keep the points ``prepared`` (:meth:`Names.row
        <buildbot_stats.storage.sqlite.layout.Names.row>`'s), ``rows`` the same encoded
        (:func:`~buildbot_stats.storage.sqlite.values.encodeRow`'s)."""
        self.prepared += prepared
        self.fields += map(_FIELDS, rows)

    def merge(self, other):
        """Keep the points of ``other`` too."""
        self.prepared += other.prepared
        self.fields += other.fields

    def grouped(self, conn, rollups):
        """``{(series id, tag set id, field set id): [fields]}`` of the points, the field
        form of a build counted in its tag form left out (as :meth:`Rollups._fromRaw`
        does). Grouped by C-level calls only (no Python code runs a point), unless a group
        may hold the field form of a build (a ``build_number`` field in a series of no
        build statistics measurement): then its points are checked one by one."""
        points = collections.defaultdict(list)
        prepared, fields = self.prepared, self.fields
        # C-level all the way: the list of each point's key (made when missing), then the
        # point's fields appended to it
        _consume(map(_APPEND, map(points.__getitem__, map(_GROUP_KEY, prepared)), fields))
        checked = rollups.twinPairs({(sid, fid) for sid, _, fid in points})
        if not checked:
            return points
        # (rare: the field form of the build number) the groups that may hold a build's
        # field form again, point by point
        for key in [k for k in points if (k[0], k[2]) in checked]:
            del points[key]
        for p, point_fields in zip(prepared, fields):
            if (p[0], p[4]) in checked:
                if p[3] == NO_BUILD and rollups.isTwin(conn, p, point_fields):
                    continue  # the build counts in its tag form
                points[p[0], p[2], p[4]].append(point_fields)
        return points


#: The types of the values rolled up (not bool, a subclass of int).
NUMBERS = frozenset({int, float})


def seriesPlan(name):
    """``(fields rolled up or None: every numeric one, sketched)`` of the series ``name``."""
    return rolledFields(name), name not in COUNTED_ONLY


def hourRows(start, points, plans, group_ids, group_of, fieldsets, level=HOUR):
    """The rollup rows (a list) of the hour (``level``: the period) starting at ``start``
    from its points
    (``{(series id, tag set id, field set id): [fields]}``); ``plans``: ``{series id:``
    :func:`seriesPlan` ``}``; ``group_ids``: ``{(series id, tag set id): group tag set
    id}``, filled by ``group_of(series id, tag set id)`` when missing; ``fieldsets``:
    ``{field set id: [names]}``. A field's values are taken from the points of each field
    set holding it by a C-level ``itemgetter`` (every point of a field set has its fields),
    and looked at one by one only when one is not a number."""
    groups = {}  # (series id, group id) -> [(field set id, [fields])]
    for (sid, tid, fid), dicts in points.items():
        gid = group_ids.get((sid, tid))
        if gid is None:
            gid = group_of(sid, tid)
        got = groups.get((sid, gid))
        if got is None:
            groups[sid, gid] = [(fid, dicts)]
        else:
            got.append((fid, dicts))
    out = []
    add = out.append
    for (sid, gid), parts in groups.items():
        fields, sketched = plans[sid]
        if fields is None:
            fields = sorted(set().union(*(fieldsets[fid] for fid, _ in parts)) - NOT_ROLLED)
        for f in fields:
            if f == POINTS:
                add((sid, level, start, gid, f, sum(len(dicts) for _, dicts in parts), None,
                     None, None, None, None))
                continue
            vs = []
            for fid, dicts in parts:
                if f not in fieldsets[fid]:
                    continue
                got = list(map(itemgetter(f), dicts))
                if not NUMBERS.issuperset(map(type, got)):
                    got = [v for v in got if type(v) in NUMBERS]  # a string, a boolean
                vs += got
            if vs:
                n = len(vs)
                add((sid, level, start, gid, f, n, sum(vs), min(vs), max(vs), n - vs.count(0),
                     encodeSketch(vs) if sketched else None))
    return out


def mergeSketches(blobs):
    """The stored sketch of the values of the stored sketches ``blobs`` (None for None):
    what :class:`Quantiles` gives, without decoding values that stay values."""
    if blobs is None:
        return None
    if all(b[:1] == VALUES_SKETCH for b in blobs) \
            and sum(len(b) - 1 for b in blobs) <= 8 * aggregates.EXACT_VALUES:
        return VALUES_SKETCH + b''.join(b[1:] for b in blobs)
    merged = Quantiles()
    for blob in blobs:
        merged.addSketch(blob)
    return merged.encoded()


INSERT_ROLLUP = ("INSERT OR REPLACE INTO rollups (series, level, start, tagset, field, count,"
                 " sum, min, max, nonzero, sketch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class Rollups:
    """The rollup maintenance of one connection (the writer's, or a command's).

    The writer hands the points it commits to :meth:`written`: points of hours not yet
    rolled up wait in memory (an hour's two lists, extended by each batch) until their
    hour closes, so that closing an hour reads nothing back; an hour whose points are not
    all in memory (written before the writer opened the file, by another program, or
    written again) is rolled up from the raw points. A transaction of points reads the
    file's rollup state again only after a maintenance or when another program committed
    (``PRAGMA data_version``, a fraction of a read), so that it never writes into an hour
    another program closed without marking it dirty (:meth:`_sync`).
    """

    def __init__(self, names):
        self.names = names  # layout.Names of the connection
        self.pending = {}  # hour -> HourAccumulator
        self.from_raw = set()  # hours >= watermark to roll up from the raw points
        self.watermark = None  # as last read from the file
        # the State as last read: read again after a maintenance (and a rollback), and
        # when another program committed
        self.state = None
        self.data_version = None  # the file's data_version when the State was read
        # the last hour that may hold points this connection did not write (written before
        # it opened the file, or by another program): its hours are checked against the raw
        # points when they close; the hours after it are complete in memory
        self.foreign_through = None
        self.foreign_version = None
        self.group_ids = {}  # (series id, tag set id) -> group tag set id
        self.tagsets = {}  # tag set id -> tags (decoded, for the raw path)
        self.fieldsets = {}
        self.series_names = {}
        self.plans = {}  # series id -> seriesPlan(its name)
        self.twin_checks = {}  # (series id, field set id) -> may hold a build's field form
        self.hours_rolled = 0  # hours rolled up by this connection (for the commands)
        self.maintained_at = None  # the ``now`` of the last maintenance, None: none yet
        self.dirtied = False  # this connection marked hours dirty since then

    # -- the state --------------------------------------------------------------------------

    def opened(self, conn):
        """After the connection opened the file: nothing of it is in memory (its hours not
        rolled up yet are rolled up from the raw points)."""
        self.watermark = State.read(conn).watermark
        self.state = self.foreign_version = self.maintained_at = None
        self.pending.clear()
        self.from_raw.clear()
        # the points in the file now are not in memory; those this connection writes next
        # are (its own commits do not move ``data_version``): a new store's first day may
        # be quiet
        self._foreign(conn)

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

    def _sync(self, conn, state):
        """In a transaction: another program (a command, a second master's writer) may
        have moved the watermark. The hours it passed are no longer pending here: it rolled
        them up from the raw points, which held every point this writer committed before
        (the state is read again at the first transaction after another program's commit,
        so a point written after that is a late point of a closed hour: dirty)."""
        if state.watermark != self.watermark:
            self.watermark = state.watermark
            for h in [h for h in self.pending if h < state.watermark]:
                del self.pending[h]
            self.from_raw = {h for h in self.from_raw if h >= state.watermark}

    def _state(self, conn):
        """The file's State, in a transaction: read again after each maintenance, and when
        another program committed since it was last read (``PRAGMA data_version``, a
        fraction of a read): a second master's writer or a backfill writing into an hour
        this writer's maintenance closed meanwhile must see it closed, and mark it dirty,
        even if it never runs a maintenance itself."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if self.state is None or version != self.data_version:
            self.state, self.data_version = State.read(conn), version
            self._sync(conn, self.state)
        return self.state

    def _foreign(self, conn):
        """In a transaction: after the file was opened, or another program committed (its
        ``data_version`` moved; this connection's own commits do not move it), the last
        hour holding a point becomes :attr:`foreign_through`. Returns the data_version."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self.foreign_version:
            last = max((t for (t,) in conn.execute(
                "SELECT (SELECT MAX(time_us) FROM points WHERE series = s.id) FROM series AS s")
                if t is not None), default=None)
            self.foreign_through = None if last is None else hourOf(last)
            self.foreign_version = version
        return version

    def groupId(self, conn, sid, tid):
        """The tag set id of the group of the points of series ``sid`` with tag set ``tid``
        (after :meth:`_loadNames`)."""
        key = (sid, tid)
        gid = self.group_ids.get(key)
        if gid is None:
            group = groupTags(self.series_names[sid], self.tagsets[tid])
            gid = self.names.tagsetId(conn, tagsJson(group), group.get('builder_name'))
            self.group_ids[key] = gid
        return gid

    def twinPairs(self, pairs):
        """Those of these ``(series id, field set id)`` whose points may be the field form
        of a build (:func:`fieldFormBuild`: a ``build_number`` field, a series not in
        :data:`ROLLED`), after :meth:`_loadNames`."""
        checks = self.twin_checks
        found = set()
        for pair in pairs:
            may = checks.get(pair)
            if may is None:
                may = checks[pair] = (self.series_names[pair[0]] not in ROLLED
                                      and 'build_number' in self.fieldsets[pair[1]])
            if may:
                found.add(pair)
        return found

    def isTwin(self, conn, p, fields):
        """Whether the point of ``points`` row ``p`` and ``fields`` is the field form of a
        build whose tag form the store has (after :meth:`_loadNames`)."""
        number = fieldFormBuild(self.series_names[p[0]], p[3], fields)
        return number is not None and isTwin(conn, p[0], p[1],
                                             self.tagsets[p[2]].get('builder_name'), number)

    def forget(self):
        """After a rollback: ids added in it do not exist (nor, perhaps, what was read)."""
        self.group_ids.clear()
        self.twin_checks = {}
        self.series_names, self.tagsets, self.fieldsets, self.plans = {}, {}, {}, {}
        self.state = self.foreign_version = None

    # -- points written ---------------------------------------------------------------------

    def writing(self, conn, prepared, rows, replaced):
        """In the writer's transaction, after its points were inserted: ``prepared`` are
        their rows (:meth:`Names.row <buildbot_stats.storage.sqlite.layout.Names.row>`),
        ``rows`` the points (:func:`~buildbot_stats.storage.sqlite.values.encodeRow`'s);
        ``replaced``: some replaced points already stored. Marks the rolled-up hours
        the points fall in as dirty; returns what :meth:`written` keeps once the transaction
        is committed."""
        if not prepared:
            return {}, replaced  # a transaction of test results only (no point to roll up)
        state = self._state(conn)
        wm_us, raw_since = state.watermark * US, state.raw_since
        hour_us = HOUR * US
        times = [p[1] for p in prepared]
        lo, hi = min(times), max(times)
        if lo >= wm_us and lo // hour_us == hi // hour_us:
            # nearly every batch: new points of one open hour, kept whole
            return {lo // hour_us * HOUR: (prepared, rows)}, replaced
        keep = {}
        dirty = set()
        for p, row in zip(prepared, rows):
            t = p[1]
            if t >= wm_us:
                hour = t // hour_us * HOUR
                kept = keep.get(hour)
                if kept is None:
                    kept = keep[hour] = ([], [])
                kept[0].append(p)
                kept[1].append(row)
            elif t >= raw_since:
                dirty.add(t // hour_us * HOUR)
        if dirty:
            conn.executemany("INSERT OR IGNORE INTO rollup_dirty (hour) VALUES (?)",
                             [(h,) for h in dirty])
            self.dirtied = True
        return keep, replaced

    def written(self, kept):
        """After the commit: the points of the open hours wait for their hour to close."""
        keep, replaced = kept
        for hour, (prepared, rows) in keep.items():
            if replaced:
                # a point written again: the hour's lists would count it twice
                self.from_raw.add(hour)
                self.pending.pop(hour, None)
            elif hour not in self.from_raw:
                acc = self.pending.get(hour)
                if acc is None:
                    acc = self.pending[hour] = HourAccumulator()
                acc.add(prepared, rows)

    # -- maintenance --------------------------------------------------------------------------

    def due(self, now):
        """Whether a maintenance at ``now`` has work worth its transaction, by what this
        connection knows (no statement): the first one after the file was opened, one
        :data:`MAINTAIN_AT_LEAST_EVERY` after the last (another program's points, the hours
        it marked dirty), hours this connection marked dirty or must read raw, closed hours
        holding :data:`CLOSE_AT_POINTS` points in memory, a closed day with hours in memory
        (a quiet day to close, as :meth:`_quietDays` decides for the round). Else the closed
        hours wait: at one build an hour, an hour's commit costs more than its points'
        writes."""
        if self.maintained_at is None or self.dirtied \
                or not self.maintained_at <= now < self.maintained_at + MAINTAIN_AT_LEAST_EVERY:
            return True  # (also when the clock went back)
        target = closedBefore(now)
        if any(h < target for h in self.from_raw):
            return True
        closing = [h for h in self.pending if h < target]
        if self._quietDays(closing, target, self.watermark)[0]:
            return True  # a quiet day to close
        return sum(self.pending[h].count for h in closing) >= CLOSE_AT_POINTS

    def maintain(self, conn, now, max_hours=HOURS_PER_STEP):
        """One step of maintenance in one transaction (``conn`` in autocommit mode): close
        the hours whose end is more than :data:`GRACE` ago, roll up the dirty hours again,
        then the days they complete. At most ``max_hours`` hours are read from raw points;
        True when more remains."""
        self.state = None  # changed here (and by the retention that may follow)
        self.maintained_at, self.dirtied = now, False
        conn.execute("BEGIN IMMEDIATE")
        try:
            more = self._maintain(conn, now, max_hours)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self.forget()
            self.names.forget()
            self.maintained_at = None
            raise
        self.names.committed()
        return more

    def _loadNames(self, conn):
        """The names added since the last call (ids only grow; a rollback forgets them)."""
        added = conn.execute("SELECT id, name FROM series WHERE id > ?",
                             (max(self.series_names, default=0),)).fetchall()
        self.series_names.update(added)
        self.plans.update((i, seriesPlan(name)) for i, name in added)
        self.tagsets.update((i, json.loads(t)) for i, t in conn.execute(
            "SELECT id, tags FROM tagsets WHERE id > ?", (max(self.tagsets, default=0),)))
        self.fieldsets.update((i, json.loads(n)) for i, n in conn.execute(
            "SELECT id, names FROM fieldsets WHERE id > ?", (max(self.fieldsets, default=0),)))

    def _maintain(self, conn, now, max_hours):
        state = State.read(conn)
        self._sync(conn, state)
        self._loadNames(conn)
        target = closedBefore(now)
        budget = max_hours
        days = set()  # the days whose hours changed
        weeks = set()  # the weeks whose days changed
        raw_days = rawDays(conn)
        wm = start = state.watermark
        self._foreign(conn)
        held = ()  # the open quiet days whose hours wait for their day to close
        fast = not self.from_raw and (self.foreign_through is None
                                      or self.foreign_through < wm)
        if fast:
            # every point from the watermark on went through this writer (nearly always):
            # the hours to close are those in memory, their points all there
            closing = sorted(h for h in self.pending if h < target)
            quiet, held = self._quietDays(closing, target, wm)
            for day, hours in quiet.items():
                self._writeDay(conn, day, hours)
                raw_days.add(day)
                weeks.add(day // WEEK * WEEK)
            for hour in closing:
                if hour in self.pending and hour // DAY * DAY not in held:
                    self._write(conn, hour, self.pending.pop(hour).grouped(conn, self),
                                fresh=True)
                    days.add(hour // DAY * DAY)
            start = start if start or not closing else closing[0]
            # the watermark stops at the first day whose hours wait for it to close
            wm = max(wm, min([target] + list(held)))
        while not fast and wm < target:
            first = self._nextPoint(conn, wm * US)
            if first is None or hourOf(first) >= target:
                wm = target
                break
            wm = hourOf(first)  # the hours before hold no point
            start = start if start else wm
            window = min(target, wm + DAY)
            counts = self._hourCounts(conn, wm * US, window * US)
            for hour in sorted(counts):
                acc = self.pending.get(hour)
                if acc is not None and hour not in self.from_raw and acc.count == counts[hour]:
                    # every point of the hour went through this writer: from memory
                    self._write(conn, hour, self.pending.pop(hour).grouped(conn, self),
                                fresh=True)
                else:
                    # written by another program, before a restart, or written again
                    if budget <= 0:
                        window = hour
                        break
                    budget -= 1
                    self.pending.pop(hour, None)
                    self.from_raw.discard(hour)
                    self._fromRaw(conn, hour)
                days.add(hour // DAY * DAY)
            wm = window
            if budget <= 0 and wm < target:
                break
        if wm != state.watermark:
            State.write(conn, 'rollup_watermark', wm)
            if not start:
                # the first watermark of a store, no hour closed: the days before it hold
                # no point (not the ~20,000 days since the epoch to roll up, empty)
                start = wm
            # every day whose end the watermark passed is complete now
            days.update(d for d in range(start // DAY * DAY, wm, DAY)
                        if state.watermark < d + DAY <= wm)
        self.watermark = wm
        for h in [h for h in self.pending if h < wm]:
            del self.pending[h]  # (an hour emptied by another program meanwhile)
        # the hours written into after they were rolled up
        for hour in dirtyHours(conn, before=self.watermark):
            if budget <= 0:
                break
            budget -= 1
            day = hour // DAY * DAY
            if day in raw_days:
                # no hourly rows to roll up again: the whole day from its raw points (kept
                # or deleted whole by retention), all its dirty hours at once
                if day * US >= state.raw_since:
                    self._dayFromRaw(conn, day)
                    weeks.add(day // WEEK * WEEK)
                conn.execute("DELETE FROM rollup_dirty WHERE hour >= ? AND hour < ?",
                             (day, day + DAY))
                continue
            if hour * US >= state.raw_since:
                self._fromRaw(conn, hour)
            conn.execute("DELETE FROM rollup_dirty WHERE hour = ?", (hour,))
            days.add(day)
        for day in sorted(days - raw_days):
            # (a raw-only day has no hourly rows: rolled up from them, it would be emptied)
            if day + DAY <= self.watermark:
                self._rollUp(conn, HOUR, DAY, day)
                weeks.add(day // WEEK * WEEK)
        for week in sorted(weeks):
            if week + WEEK <= self.watermark:
                self._rollUp(conn, DAY, WEEK, week)
        return (self.watermark < target and not held) \
            or bool(dirtyHours(conn, before=self.watermark))

    def _nextPoint(self, conn, since_us):
        """The time of the first raw point at or after ``since_us``, None without one."""
        times = [conn.execute("SELECT time_us FROM points WHERE series = ? AND time_us >= ?"
                              " ORDER BY time_us LIMIT 1", (sid, since_us)).fetchone()
                 for sid in self.series_names]
        return min((t[0] for t in times if t is not None), default=None)

    def _hourCounts(self, conn, lo_us, hi_us):
        """``{hour: raw points}`` of ``[lo_us, hi_us)``."""
        return dict(conn.execute(
            f"SELECT time_us / {HOUR * US} * {HOUR}, COUNT(*) FROM points"
            f" WHERE {self._seriesIn()} AND time_us >= ? AND time_us < ? GROUP BY 1",
            (lo_us, hi_us)))

    def _firstTime(self, conn):
        firsts = [conn.execute("SELECT MIN(time_us) FROM points WHERE series = ?",
                               (sid,)).fetchone()[0] for sid in self.series_names]
        firsts = [t for t in firsts if t is not None]
        return min(firsts) if firsts else None

    def _quietDays(self, closing, target, watermark):
        """``({closed quiet day: [its hours in memory]}, {open day whose hours wait})``
        among the days of the closed hours ``closing`` and the day open at ``target``
        (every point from ``watermark`` on in memory): a day starting at or after the
        watermark (none of its hours rolled up) holding
        fewer than :data:`SPARSE_DAY_POINTS` points in memory is quiet; closed, it is
        rolled up to day rows; open, its hours wait for it."""
        quiet, held = {}, set()
        # the day open at ``target`` too, even without closed hours in memory: the
        # watermark passing into it would leave it rolled up by the hour
        for day in sorted({h // DAY * DAY for h in closing} | {target // DAY * DAY}):
            if day < watermark:
                continue  # hours of it rolled up already: by the hour
            hours = sorted(h for h in self.pending if day <= h < day + DAY)
            if sum(self.pending[h].count for h in hours) >= SPARSE_DAY_POINTS:
                continue
            if day + DAY <= target:
                quiet[day] = hours
            else:
                held.add(day)
        return quiet, held

    def _writeDay(self, conn, day, hours):
        """Roll up the quiet day starting at ``day`` from its ``hours`` in memory: its day
        rows only; the day becomes raw-only."""
        # the day's batches as one accumulator: grouped once, as an hour's are
        day_points = HourAccumulator()
        for hour in hours:
            acc = self.pending.pop(hour)
            day_points.merge(acc)
        self._writeLevel(conn, DAY, day, day_points.grouped(conn, self), fresh=False)
        conn.execute("INSERT OR IGNORE INTO rollup_raw_days (day) VALUES (?)", (day,))

    def _dayFromRaw(self, conn, day):
        """Roll up the raw-only day starting at ``day`` again from its raw points."""
        self._writeLevel(conn, DAY, day, self._rawPoints(conn, day * US, (day + DAY) * US),
                         fresh=False)

    def _fromRaw(self, conn, hour):
        """Roll up the hour starting at ``hour`` from its raw points."""
        self._write(conn, hour, self._rawPoints(conn, hour * US, (hour + HOUR) * US))

    def _rawPoints(self, conn, lo, hi):
        """``{(series id, tag set id, field set id): [fields]}`` of the raw points of
        ``[lo, hi)`` (microseconds), the field form of a build counted in its tag form left
        out."""
        points = collections.defaultdict(list)
        for sid in self.series_names:
            rows = conn.execute("SELECT time_us, tagset, build, fieldset, vals FROM points"
                                " WHERE series = ? AND time_us >= ? AND time_us < ?",
                                (sid, lo, hi)).fetchall()
            for t, tid, build, fid, vals in rows:
                fields = dict(zip(self.fieldsets[fid], json.loads(vals)))
                if self.isTwin(conn, (sid, t, tid, build, fid), fields):
                    continue  # the build counts in its tag form
                points[(sid, tid, fid)].append(fields)
        return points

    def _seriesIn(self):
        """``series IN (...)`` of every series: the rollups' primary key and the raw
        points' index start with it."""
        return f"series IN ({','.join(str(int(i)) for i in self.series_names) or 'NULL'})"

    def _write(self, conn, hour, points, fresh=False):
        self._writeLevel(conn, HOUR, hour, points, fresh)

    def _writeLevel(self, conn, level, start, points, fresh=False):
        """Write the rows of the hour (``level``: the day) starting at ``start`` from its
        ``points`` (``fresh``: it has none yet)."""
        self.hours_rolled += level // HOUR
        if not fresh:
            conn.execute(f"DELETE FROM rollups WHERE {self._seriesIn()} AND level = ? AND"
                         " start = ?", (level, start))
        rows = hourRows(start, points, self.plans, self.group_ids,
                        lambda sid, tid: self.groupId(conn, sid, tid), self.fieldsets, level)
        rows.sort()  # in the key's order: each insert lands next to the one before
        conn.executemany(INSERT_ROLLUP, rows)

    def _rollUp(self, conn, finer, level, start):
        """The rows of ``level`` (a day, a week) starting at ``start`` from the rows of the
        ``finer`` level in it, read once and added up here: counts, sums, minima, maxima,
        non-zero counts, the sketches merged (:func:`mergeSketches`)."""
        series_in = self._seriesIn()
        conn.execute(f"DELETE FROM rollups WHERE {series_in} AND level = ? AND start = ?",
                     (level, start))
        parts = {}
        for sid, gid, field, count, total, lo, hi, nonzero, blob in conn.execute(
                "SELECT series, tagset, field, count, sum, min, max, nonzero, sketch"
                f" FROM rollups WHERE {series_in} AND level = ? AND start >= ? AND start < ?",
                (finer, start, start + level)):
            key = (sid, gid, field)
            part = parts.get(key)
            if part is None:
                part = parts[key] = [0, None, None, None, None, None]
            part[0] += count
            if total is not None:
                part[1] = total if part[1] is None else part[1] + total
            if lo is not None and (part[2] is None or lo < part[2]):
                part[2] = lo
            if hi is not None and (part[3] is None or hi > part[3]):
                part[3] = hi
            if nonzero is not None:
                part[4] = nonzero if part[4] is None else part[4] + nonzero
            if blob is not None:
                if part[5] is None:
                    part[5] = [blob]
                else:
                    part[5].append(blob)
        conn.executemany(INSERT_ROLLUP, [
            (sid, level, start, gid, field, count, total, lo, hi, nonzero, mergeSketches(blobs))
            for (sid, gid, field), (count, total, lo, hi, nonzero, blobs) in parts.items()])

    # -- rebuilding ----------------------------------------------------------------------------

    def markForRebuild(self, conn, since=None):
        """Every rolled-up hour holding raw points (from ``since``, seconds) becomes dirty:
        the next maintenance steps roll them up again. Returns how many."""
        state = State.read(conn)
        lo = max(state.raw_since, 0 if since is None else int(since * US))
        hours = self._rawHours(conn, lo, state.watermark * US)
        # hours with rollups but no raw point left (their points deleted by hand) too
        self._loadNames(conn)
        rows = conn.execute(f"SELECT DISTINCT start FROM rollups WHERE {self._seriesIn()} AND"
                            " level = ? AND start >= ? AND start < ?",
                            (HOUR, lo // US, state.watermark)).fetchall()
        hours.update(h for (h,) in rows if h * US >= state.raw_since)
        # a raw-only day (its day rows only): rolled up again whole from its first hour
        hours.update(d for d in rawDays(conn)
                     if d * US >= state.raw_since and lo // US < d + DAY
                     and d < state.watermark)
        conn.executemany("INSERT OR IGNORE INTO rollup_dirty (hour) VALUES (?)",
                         [(h,) for h in sorted(hours)])
        return len(hours)
