"""Lookups: the one owner of every cached look-up the captures share.

Several captures consume the same ``finished`` message and want the same things about the
build: the builder's name, the build's properties, the worker's name, the build request
and its buildset (for the queue times and the branch, repository and project tags), the
steps and the test result sets. :class:`Lookups` answers each of them, most of the time
without asking the database:

* Buildbot already announces most of them on its MQ, and the service's subscription table
  hands :class:`Lookups` those messages (:meth:`Lookups.subscriptions`): builders started, stopped and updated (names), builds new (the build dicts
  ``yieldMetricsValue`` needs while a build runs), build property updates, workers
  (names), build requests new and buildsets new.
* What the MQ did not announce (a build that started before the service did, an entry the
  bound pushed out, the steps and test result sets of a build, which change until it ends)
  is asked of the data API once; concurrent askers share one query.

Every cache is bounded (see :data:`SIZES` and docs/service.rst): the memory of the
lookups does not grow with the number of builds a master ever ran.
"""

from __future__ import annotations

from collections import OrderedDict

import sqlalchemy as sa
from twisted.internet import defer
from twisted.python import log

from buildbot_stats.slices import cyclicGCPaused
from buildbot_stats.subscriptions import Subscription

SOURCE_TAGS = ('branch', 'repository', 'project')

#: The most entries each cache keeps (least recently used ones go first). With these
#: defaults the lookups hold at most a few megabytes: builds, properties, requests and
#: buildsets are a few hundred bytes to a few kilobytes each.
SIZES = {
    'builder_names': 10000,
    'builds': 1000,
    'properties': 1000,
    'workers': 10000,
    'build_requests': 1000,
    'buildsets': 1000,
    'steps': 64,
    'test_result_sets': 64,
    'build_tags': 1000,
}

# The MQ messages that keep a cache current, and the method each goes to. A feed is consumed
# only while a capture uses its cache (Capture.uses): every consumer costs a match on every
# message the master produces. A key here is consumed once by the service, whoever else
# wants it (buildbot_stats.subscriptions).
FEEDS = {
    # started, stopped, update
    'builder_names': (('builders', None, None), '_builderChanged'),
    'builds': (('builds', None, 'new'), '_buildNew'),
    'properties': (('builds', None, 'properties', 'update'), '_propertiesUpdated'),
    # connected, disconnected, missing, state_updated
    'workers': (('workers', None, None), '_workerChanged'),
    'build_requests': (('buildrequests', None, 'new'), '_buildRequestNew'),
    'buildsets': (('buildsets', None, 'new'), '_buildsetNew'),
}


class OnceLookup:
    """A bounded memo of a Deferred-returning look-up: concurrent misses share one call.

    :param lookup: ``lookup(key)`` returns the value or a Deferred of it
    :param max_size: entries kept; the least recently used goes first
    :param evicted: called with the key of each entry the bound pushes out
    """

    def __init__(self, lookup, max_size, evicted=None):
        self._lookup = lookup
        self._max_size = max_size
        self._evicted = evicted
        self._values = OrderedDict()
        self._waiting = {}
        self.misses = 0

    def get(self, key):
        values = self._values
        if key in values:
            values.move_to_end(key)
            return defer.succeed(values[key])
        d = defer.Deferred()
        waiters = self._waiting.get(key)
        if waiters is not None:
            waiters.append(d)
            return d
        self._waiting[key] = [d]
        self.misses += 1
        lookup = defer.maybeDeferred(self._lookup, key)

        def done(value):
            self.put(key, value)
            for w in self._waiting.pop(key, []):
                w.callback(value)

        def failed(f):
            for w in self._waiting.pop(key, []):
                w.errback(f)

        lookup.addCallbacks(done, failed)
        return d

    def lookup(self, key):
        """The value of ``key`` itself when it is cached (the common case: no Deferred to
        make and fire), else a Deferred of it, as :meth:`get`. Use with :func:`then`."""
        values = self._values
        if key in values:
            values.move_to_end(key)
            return values[key]
        return self.get(key)

    def peek(self, key, default=None):
        """The cached value of ``key`` (no look-up, no change of order), or ``default``."""
        return self._values.get(key, default)

    def pop(self, key):
        """Forget ``key`` (no look-up)."""
        self._values.pop(key, None)

    def put(self, key, value):
        values = self._values
        values[key] = value
        values.move_to_end(key)
        while len(values) > self._max_size:
            old, _ = values.popitem(last=False)
            if self._evicted is not None:
                self._evicted(old)

    def __contains__(self, key):
        return key in self._values

    def __len__(self):
        return len(self._values)

    def clear(self):
        self._values.clear()


def then(result, fn, *args):
    """``fn(result, *args)`` now when ``result`` is a value, or when it fires when it is a
    Deferred: the cached path of a capture runs without making a Deferred."""
    # OnceLookup makes plain Deferreds; the type test spares Deferred's ABC isinstance
    if type(result) is defer.Deferred:
        return result.addCallback(fn, *args)
    return fn(result, *args)


class Lookups:
    """Cached look-ups about builders, builds, workers, requests and buildsets.

    :param owner: anything with a ``master`` attribute (the StatsService, a capture used
        alone); read at look-up time, so the owner may get its master later
    """

    def __init__(self, owner):
        self._owner = owner
        self.builder_names = OnceLookup(self._askBuilderName, SIZES['builder_names'])
        self.builds = OnceLookup(self._askPath('builds'), SIZES['builds'])
        self.properties = OnceLookup(self._askBuildPath('properties'), SIZES['properties'],
                                     evicted=self._propertiesEvicted)
        self.workers = OnceLookup(self._askWorkerName, SIZES['workers'])
        self.build_requests = OnceLookup(self._askPath('buildrequests'),
                                         SIZES['build_requests'])
        self.buildsets = OnceLookup(self._askPath('buildsets'), SIZES['buildsets'])
        self.steps = OnceLookup(self._askBuildPath('steps'), SIZES['steps'])
        self.test_result_sets = OnceLookup(self._askBuildPath('test_result_sets'),
                                           SIZES['test_result_sets'])
        # keyed by (workerid, buildrequestid): that is all the tags of a build depend on
        self.build_tags = OnceLookup(self._askBuildTags, SIZES['build_tags'])
        self._following = set()  # the caches whose feed the service should consume
        self._fed = set()  # the caches whose feed is consumed now
        # The property updates of a build are complete only when the lookups listened
        # before its first one: true of builds with an id above this (None: of none yet).
        self._trusted_above = None

    @property
    def data(self):
        return self._owner.master.data

    def memos(self):
        """Every cache, by name."""
        return {name: getattr(self, name) for name in SIZES}

    @property
    def misses(self):
        """Look-ups the caches could not answer (each one data API query), by cache."""
        return {name: memo.misses for name, memo in self.memos().items()}

    # -- the MQ feeds (a component of the service's subscription table) ---------------------

    def follow(self, names):
        """Keep the caches ``names`` (see :data:`FEEDS`) fed from the MQ, and only those:
        a feed no longer named is left (its cache keeps what it holds, asking the data API
        for the rest). Applied by the service's next :meth:`subscriptions`."""
        self._following = set(names) & set(FEEDS)

    def subscriptions(self):
        """The feeds of the caches followed (the subscription contract, see
        :mod:`buildbot_stats.subscriptions`): builder, worker and build messages of every
        master, none replayed."""
        return [Subscription(FEEDS[name][0], getattr(self, FEEDS[name][1]),
                             f"lookups ({name})", every_master=True)
                for name in sorted(self._following)]

    @defer.inlineCallbacks
    def subscribed(self, keys):
        """The feeds whose keys are in ``keys`` are delivered from now on."""
        fed = {name for name, (key, _) in FEEDS.items() if tuple(key) in keys}
        started, self._fed = fed - self._fed, fed
        if 'properties' not in fed:
            # updates will be missed from now on: what is cached may go stale
            self._trusted_above = None
            self.properties.clear()
        elif 'properties' in started:
            yield self._startTrusting()

    @property
    def fed(self):
        """The names of the caches whose MQ feed is delivered now."""
        return set(self._fed)

    @defer.inlineCallbacks
    def _startTrusting(self):
        # builds created from now on have a higher id than the newest one now: their
        # property updates are all seen
        try:
            newest = yield self.data.get(('builds',), order=['-buildid'], limit=1)
        except Exception as e:
            log.msg(f"buildbot_stats: could not read the newest build id ({e}); build "
                    "properties are asked of the data API")
            return
        if 'properties' in self._fed:
            self._trusted_above = newest[0]['buildid'] if newest else 0

    def _builderChanged(self, routingKey, msg):
        if msg.get('builderid') is not None and msg.get('name'):
            self.builder_names.put(msg['builderid'], msg['name'])

    def _buildNew(self, routingKey, msg):
        if msg.get('buildid') is not None:
            self.builds.put(msg['buildid'], msg)

    def _propertiesUpdated(self, routingKey, msg):
        try:
            buildid = int(routingKey[1])
        except (TypeError, ValueError):
            return
        if 'name' in msg:
            # Buildbot's setBuildProperty (one property) announces {'name': (value, source)}
            # whatever the property's name, so such a message cannot be trusted: this
            # build's properties come from the data API
            self.properties.pop(buildid)
            self._propertiesEvicted(buildid)
            return
        props = self.properties.peek(buildid)
        if props is None:
            if self._trusted_above is None or buildid <= self._trusted_above:
                # an update of a build whose earlier updates were missed: the data API
                # answers for it when a capture asks
                return
            props = {}
        # a build's properties only ever grow or change; tuples as the data API gives them
        for name, value in msg.items():
            props[name] = tuple(value) if isinstance(value, list) else value
        self.properties.put(buildid, props)

    def _propertiesEvicted(self, buildid):
        # later updates of this build would make an incomplete entry: ask the data API
        if self._trusted_above is not None and buildid > self._trusted_above:
            self._trusted_above = buildid

    def _workerChanged(self, routingKey, msg):
        if msg.get('workerid') is not None and msg.get('name'):
            self.workers.put(msg['workerid'], msg['name'])

    def _buildRequestNew(self, routingKey, msg):
        if msg.get('buildrequestid') is not None:
            self.build_requests.put(msg['buildrequestid'], msg)

    def _buildsetNew(self, routingKey, msg):
        if msg.get('bsid') is not None:
            self.buildsets.put(msg['bsid'], msg)

    # -- the getters (each returns a Deferred) -------------------------------------------------

    def getBuilderName(self, builderid):
        return self.builder_names.get(builderid)

    def getBuild(self, buildid):
        """The build dict, as the ``new`` message or the data API gives it."""
        return self.builds.get(buildid)

    def getBuildProperties(self, buildid):
        """``{name: (value, source)}`` of a build."""
        return self.properties.get(buildid)

    def getWorkerName(self, workerid):
        return self.workers.get(workerid)

    def getBuildRequest(self, buildrequestid):
        return self.build_requests.get(buildrequestid)

    def getBuildset(self, buildsetid):
        return self.buildsets.get(buildsetid)

    def getBuildSteps(self, buildid):
        """The steps of a finished build, as the data API gives them."""
        return self.steps.get(buildid)

    def getTestResultSets(self, buildid):
        return self.test_result_sets.get(buildid)

    @defer.inlineCallbacks
    def getTestResults(self, buildid):
        """``[(category, test name, value, duration_ns), ...]``: every result of the complete
        test result sets of a finished build, sets by id, results by id (the test's code
        path stands for a missing name). Not cached (a build may have 100,000): read in
        Buildbot's database thread, rows to tuples there too, so that the reactor only gets
        the list; the data API when the master has no database of its own."""
        sets = yield self.getTestResultSets(buildid)
        sets = [rs for rs in sets or [] if rs.get('complete')]
        if not sets:
            return []
        categories = {rs['test_result_setid']: rs.get('category') for rs in sets}
        db = getattr(self._owner.master, 'db', None)
        if getattr(db, 'pool', None) is not None and hasattr(db, 'model'):
            return (yield db.pool.do(_readTestResults, db.model, categories))
        out = []
        for setid in sorted(categories):
            results = yield self.data.get(('test_result_sets', setid, 'results'))
            for r in sorted(results or [], key=lambda r: r.get('test_resultid') or 0):
                out.append((categories[setid], r.get('test_name') or r.get('test_code_path'),
                            r.get('value'), r.get('duration_ns')))
        return out

    def getBuildTags(self, build):
        """``{'worker', 'branch', 'repository', 'project'}`` of a build, those known.

        A look-up that fails is logged with the build and leaves its tags out: the point is
        still written.
        """
        return self.build_tags.get((build.get('workerid'), build.get('buildrequestid')))

    # -- the data API look-ups (the fallback) ----------------------------------------------------

    def _askPath(self, collection):
        return lambda key: self.data.get((collection, key))

    def _askBuildPath(self, what):
        return lambda buildid: self.data.get(('builds', buildid, what))

    @defer.inlineCallbacks
    def _askBuilderName(self, builderid):
        builder = yield self.data.get(('builders', builderid))
        return builder['name'] if builder else None

    @defer.inlineCallbacks
    def _askWorkerName(self, workerid):
        if workerid is None or workerid < 0:
            return None
        worker = yield self.data.get(('workers', workerid))
        return worker['name'] if worker else None

    @defer.inlineCallbacks
    def _askBuildTags(self, key):
        workerid, buildrequestid = key
        tags = {}
        try:
            tags['worker'] = yield self.getWorkerName(workerid)
        except Exception as e:
            log.err(e, f"buildbot_stats: looking up worker {workerid} (build request "
                       f"{buildrequestid}); the worker tag is left out")
        try:
            tags.update((yield self._sourceTags(buildrequestid)))
        except Exception as e:
            log.err(e, f"buildbot_stats: looking up the sources of build request "
                       f"{buildrequestid}; branch, repository and project tags are left out")
        return {k: v for k, v in tags.items() if v}

    @defer.inlineCallbacks
    def _sourceTags(self, buildrequestid):
        if buildrequestid is None:
            return {}
        request = yield self.getBuildRequest(buildrequestid)
        if not request:
            return {}
        buildset = yield self.getBuildset(request['buildsetid'])
        if not buildset:
            return {}
        return sourceTags(buildset.get('sourcestamps') or [])


def _readTestResults(conn, model, categories):
    """In the database thread: the rows of :meth:`Lookups.getTestResults`, read with the
    cyclic garbage collector paused (see :mod:`buildbot_stats.slices`)."""
    with cyclicGCPaused():
        return _testResultRows(conn, model, categories)


def _testResultRows(conn, model, categories):
    results, names, paths = model.test_results, model.test_names, model.test_code_paths
    joined = results.outerjoin(names, results.c.test_nameid == names.c.id).outerjoin(
        paths, results.c.test_code_pathid == paths.c.id)
    q = (sa.select(results.c.test_result_setid, names.c.name, paths.c.path, results.c.value,
                   results.c.duration_ns)
         .select_from(joined)
         .where(results.c.test_result_setid.in_(sorted(categories)))
         .order_by(results.c.test_result_setid, results.c.id))
    return [(categories[setid], name or path, value, duration_ns)
            for setid, name, path, value, duration_ns in conn.execute(q)]


def sourceTags(sourcestamps):
    """Branch, repository and project of a build's sourcestamps.

    With several codebases, each tag is the first non-empty value in codebase order, so a
    build of one main repository plus helpers is tagged with the first codebase that sets
    it.
    """
    tags = {}
    for ss in sorted(sourcestamps, key=lambda ss: ss.get('codebase') or ''):
        for name in SOURCE_TAGS:
            if not tags.get(name) and ss.get(name):
                tags[name] = ss[name]
    return tags
