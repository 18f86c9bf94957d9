"""What ``yieldMetricsValue`` leaves in Buildbot's database, so that it can be replayed.

Each call is also recorded as Buildbot build data (``master.data.updates.setBuildData``)
named ``stats.<data_name>``: a JSON document (UTF-8 bytes)::

    {"format": 1, "values": [{"timestamp": 1718000000.123456, "post_data": {...}}, ...]}

one entry per call for that build and name, in call order, ``timestamp`` being the time the
live point carries. The backfill command and the catch-up read it back
(:mod:`buildbot_stats.history.reader`) and post the same points. Data that JSON cannot hold
(a datetime, bytes, NaN...) still goes to the backends live but is not recorded: it is
logged once per data name and counted in ``StatsService.metrics()['unrecorded_data']``.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet import defer
from twisted.python import log

from buildbot_stats.history.reader import BUILD_DATA_PREFIX
from buildbot_stats.history.reader import decodeBuildData
from buildbot_stats.history.reader import encodeBuildData

SOURCE = 'buildbot_stats'


class BuildDataRecorder:
    """Appends each ``yieldMetricsValue`` call to its build's ``stats.<data_name>`` data.

    The values of the builds being recorded are kept (a bounded memo) so that an append
    is one write; calls for one build and name are serialized so that none is lost.
    """

    def __init__(self, owner, max_size=1000):
        self._owner = owner
        self._values = OrderedDict()
        self._locks = {}
        self._max_size = max_size
        self._unencodable = set()
        self.unrecorded = 0

    @defer.inlineCallbacks
    def record(self, buildid, data_name, post_data, timestamp):
        master = self._owner.master
        updates = getattr(getattr(master, 'data', None), 'updates', None)
        if updates is None or not hasattr(updates, 'setBuildData'):
            return
        try:
            encodeBuildData([(timestamp, post_data)])
        except (TypeError, ValueError) as e:
            self.unrecorded += 1
            if data_name not in self._unencodable:
                self._unencodable.add(data_name)
                log.msg(f"buildbot_stats: yieldMetricsValue({data_name!r}) for buildid "
                        f"{buildid}: the data is not JSON ({e}); it is stored live but not "
                        "recorded as build data, so a backfill cannot rebuild it (logged once "
                        "per data name)")
            return
        key = (buildid, data_name)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = defer.DeferredLock()
        yield lock.acquire()
        try:
            name = BUILD_DATA_PREFIX + data_name
            values = self._values.get(key)
            if values is None:
                values = yield self._stored(master, buildid, name)
            values = values + [(timestamp, post_data)]
            yield updates.setBuildData(buildid, name, encodeBuildData(values), SOURCE)
            self._values[key] = values
            self._values.move_to_end(key)
            while len(self._values) > self._max_size:
                self._values.popitem(last=False)
        except Exception as e:
            self.unrecorded += 1
            log.err(e, f"buildbot_stats: recording yieldMetricsValue({data_name!r}) as build "
                       f"data of buildid {buildid}")
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(key, None)

    @defer.inlineCallbacks
    def _stored(self, master, buildid, name):
        db = getattr(master, 'db', None)
        if db is None or not hasattr(db, 'build_data'):
            return []
        model = yield db.build_data.getBuildData(buildid, name)
        if model is None or model.value is None:
            return []
        try:
            return decodeBuildData(model.value)
        except (ValueError, KeyError, TypeError):
            return []
