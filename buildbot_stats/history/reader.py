"""Reading finished builds from Buildbot's database in batches, for replay.

Every query of a batch runs in Buildbot's database thread pool (``db.pool.do``), one
round trip per table for the whole batch: the builds, then their properties, steps, test
result sets, ``yieldMetricsValue``'s build data, build requests and builders. Rows become the same
dicts the data API gives (Buildbot's own row and ``_db2data`` converters), so a capture
cannot tell a replayed build from a live one. Nothing here writes to the database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field

import sqlalchemy as sa

from buildbot.data import buildrequests as data_buildrequests
from buildbot.data import builds as data_builds
from buildbot.data import sourcestamps as data_sourcestamps
from buildbot.data import steps as data_steps
from buildbot.data import test_result_sets as data_test_result_sets
from buildbot.util import datetime2epoch

from buildbot_stats.history.builddata import OLD_PREFIX
from buildbot_stats.history.builddata import RECORD_NAME
from buildbot_stats.history.builddata import decodeRow
from buildbot_stats.history.builddata import merged

# SQLite allows 999 bound parameters per statement in old versions; stay well below
IN_CHUNK = 500


@dataclass
class BuildRecord:
    """One finished build and what the captures look up about it."""

    build: dict
    properties: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    test_result_sets: list = field(default_factory=list)
    # data_name -> [(timestamp, post_data)], in call order (yieldMetricsValue's record)
    data: dict = field(default_factory=dict)
    buildrequest: dict | None = None
    buildset: dict | None = None
    bad_data: list = field(default_factory=list)  # build data names that did not decode


def chunks(ids):
    """``ids`` in lists of at most :data:`IN_CHUNK` (bound parameters of one statement)."""
    ids = list(ids)
    for i in range(0, len(ids), IN_CHUNK):
        yield ids[i:i + IN_CHUNK]


class BuildReader:
    """Batched, read-only access to the finished builds of a Buildbot database.

    :param db: Buildbot's ``DBConnector`` (the master's own, or one opened by the backfill
        command); only its ``pool`` and ``model`` (and row converters) are used
    :param since: epoch seconds; builds that completed at or after it
    :param until: epoch seconds; builds that completed before it
    :param builderids: only these builders (None: all)
    :param masterid: only builds this master ran (None: all)
    """

    def __init__(self, db, since=None, until=None, builderids=None, masterid=None):
        self.db = db
        self.since = since
        self.until = until
        self.builderids = None if builderids is None else sorted(builderids)
        self.masterid = masterid

    def _where(self, tbl):
        conds = [tbl.c.complete_at.isnot(None)]
        if self.since is not None:
            conds.append(tbl.c.complete_at >= self.since)
        if self.until is not None:
            conds.append(tbl.c.complete_at < self.until)
        if self.builderids is not None:
            conds.append(tbl.c.builderid.in_(self.builderids))
        if self.masterid is not None:
            conds.append(tbl.c.masterid == self.masterid)
        return sa.and_(*conds)

    def count(self):
        """A Deferred: how many builds are in range."""
        def thd(conn):
            tbl = self.db.model.builds
            q = sa.select(sa.func.count(tbl.c.id)).where(self._where(tbl))
            return conn.execute(q).scalar()
        return self.db.pool.do(thd)

    def builderNames(self):
        """A Deferred: ``{builderid: name}`` of every builder."""
        def thd(conn):
            tbl = self.db.model.builders
            return {r.id: r.name for r in conn.execute(sa.select(tbl.c.id, tbl.c.name))}
        return self.db.pool.do(thd)

    def workerNames(self):
        def thd(conn):
            tbl = self.db.model.workers
            return {r.id: r.name for r in conn.execute(sa.select(tbl.c.id, tbl.c.name))}
        return self.db.pool.do(thd)

    def readBatch(self, after_id, limit):
        """A Deferred: up to ``limit`` :class:`BuildRecord` with build id > ``after_id``,
        in build id order (an empty list at the end)."""
        return self.db.pool.do(self._thdReadBatch, after_id, limit)

    # -- in the database thread -------------------------------------------------------------

    def _thdReadBatch(self, conn, after_id, limit):
        db = self.db
        tbl = db.model.builds
        q = (tbl.select().where(sa.and_(self._where(tbl), tbl.c.id > after_id))
             .order_by(tbl.c.id).limit(limit))
        records = {}
        for row in conn.execute(q).fetchall():
            build = data_builds._db2data(db.builds._model_from_row(row))
            records[build['buildid']] = BuildRecord(build)
        if not records:
            return []
        ids = list(records)
        self._thdProperties(conn, records, ids)
        self._thdSteps(conn, records, ids)
        self._thdTestResultSets(conn, records, ids)
        self._thdBuildData(conn, records, ids)
        self._thdBuildRequests(conn, records)
        self._thdBuildsets(conn, records)
        return [records[i] for i in ids]

    def _thdProperties(self, conn, records, ids):
        bp = self.db.model.build_properties
        for chunk in chunks(ids):
            q = sa.select(bp.c.buildid, bp.c.name, bp.c.value, bp.c.source).where(
                bp.c.buildid.in_(chunk))
            for row in conn.execute(q):
                records[row.buildid].properties[row.name] = (json.loads(row.value), row.source)

    def _thdSteps(self, conn, records, ids):
        st = self.db.model.steps
        self._thdPerBuild(conn, records, ids, st, (st.c.buildid, st.c.number), 'steps',
                          lambda row: data_steps._db2data(self.db.steps._model_from_row(row)))

    def _thdTestResultSets(self, conn, records, ids):
        trs = self.db.model.test_result_sets
        comp = self.db.test_result_sets
        self._thdPerBuild(conn, records, ids, trs, (trs.c.id,), 'test_result_sets',
                          lambda row: data_test_result_sets._db2data(comp._model_from_row(row)))

    @staticmethod
    def _thdPerBuild(conn, records, ids, table, order, attr, convert):
        """Rows of ``table`` for the builds ``ids``, as ``convert`` makes them, appended to
        each record's list ``attr`` in ``order``."""
        for chunk in chunks(ids):
            q = table.select().where(table.c.buildid.in_(chunk)).order_by(*order)
            for row in conn.execute(q):
                getattr(records[row.buildid], attr).append(convert(row))

    def _thdBuildData(self, conn, records, ids):
        # the record of this version (one row per build) and of earlier ones (a row per
        # data name): see buildbot_stats.history.builddata
        bd = self.db.model.build_data
        for chunk in chunks(ids):
            q = (sa.select(bd.c.buildid, bd.c.name, bd.c.value)
                 .where(sa.and_(bd.c.buildid.in_(chunk),
                                sa.or_(bd.c.name == RECORD_NAME,
                                       bd.c.name.like(OLD_PREFIX + '%'))))
                 .order_by(bd.c.buildid, bd.c.id))
            for row in conn.execute(q):
                try:
                    merged(records[row.buildid].data, decodeRow(row.name, row.value))
                except (ValueError, KeyError, TypeError, AttributeError):
                    records[row.buildid].bad_data.append(row.name)

    def _thdBuildRequests(self, conn, records):
        comp = self.db.buildrequests
        reqs = self.db.model.buildrequests
        by_request = {}
        for rec in records.values():
            if rec.build.get('buildrequestid') is not None:
                by_request.setdefault(rec.build['buildrequestid'], []).append(rec)
        for chunk in chunks(by_request):
            q = comp._simple_sa_select_query().where(reqs.c.id.in_(chunk))
            for row in conn.execute(q):
                request = data_buildrequests._db2data(comp._modelFromRow(row), None)
                for rec in by_request.get(request['buildrequestid'], ()):
                    rec.buildrequest = request

    def _thdBuildsets(self, conn, records):
        db = self.db
        bs = db.model.buildsets
        by_set = {}
        for rec in records.values():
            if rec.buildrequest is not None:
                by_set.setdefault(rec.buildrequest['buildsetid'], []).append(rec)
        models = []
        for chunk in chunks(by_set):
            for row in conn.execute(bs.select().where(bs.c.id.in_(chunk))).fetchall():
                models.append(db.buildsets._thd_model_from_row(conn, row))
        ssids = sorted({ssid for m in models for ssid in m.sourcestamps})
        stamps = {}
        ss = db.model.sourcestamps
        for chunk in chunks(ssids):
            for row in conn.execute(ss.select().where(ss.c.id.in_(chunk))).fetchall():
                stamps[row.id] = data_sourcestamps._db2data(
                    db.sourcestamps._rowToModel_thd(conn, row))
        for m in models:
            buildset = buildsetData(m, [stamps[i] for i in m.sourcestamps if i in stamps])
            for rec in by_set.get(m.bsid, ()):
                rec.buildset = buildset


def buildsetData(model, sourcestamps):
    """The data API's buildset dict (``buildbot.data.buildsets._db2data``, whose
    sourcestamps come from one data API call each)."""
    return {
        "bsid": model.bsid,
        "external_idstring": model.external_idstring,
        "reason": model.reason,
        "submitted_at": datetime2epoch(model.submitted_at),
        "complete": model.complete,
        "complete_at": datetime2epoch(model.complete_at),
        "results": model.results,
        "parent_buildid": model.parent_buildid,
        "parent_relationship": model.parent_relationship,
        "rebuilt_buildid": model.rebuilt_buildid,
        "sourcestamps": sourcestamps,
    }
