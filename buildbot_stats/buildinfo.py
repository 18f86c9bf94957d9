"""What the build statistics captures look up about a finished build, looked up once.

Results, queue times, steps and tests of one build all want the worker's name and the
build's branch, repository and project; the queue capture also wants the build request and
the buildset. :class:`BuildInfo` asks the data API once per thing (concurrent misses share
one call, see :class:`~buildbot_stats.buildcache.OnceLookup`) and the StatsService owns one
that all its captures share.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.python import log

from buildbot_stats.buildcache import OnceLookup

SOURCE_TAGS = ('branch', 'repository', 'project')


class BuildInfo:
    """Cached data API lookups about builds.

    :param owner: anything with a ``master`` attribute (the StatsService, a capture); read
        at lookup time, so the owner may get its master after this is built
    """

    def __init__(self, owner):
        self._owner = owner
        self._workers = OnceLookup(self._lookupWorkerName, max_size=10000)
        self._buildrequests = OnceLookup(self._lookupPath('buildrequests'), max_size=256)
        self._buildsets = OnceLookup(self._lookupPath('buildsets'), max_size=256)
        self._steps = OnceLookup(self._lookupBuildPath('steps'), max_size=64)
        self._testResultSets = OnceLookup(self._lookupBuildPath('test_result_sets'), max_size=64)
        # keyed by (workerid, buildrequestid): that is all the tags of a build depend on
        self._buildTags = OnceLookup(self._lookupBuildTags, max_size=256)

    @property
    def data(self):
        return self._owner.master.data

    def _lookupPath(self, collection):
        return lambda key: self.data.get((collection, key))

    def _lookupBuildPath(self, what):
        return lambda buildid: self.data.get(('builds', buildid, what))

    # -- the getters (each returns a Deferred) ------------------------------------------------

    def getWorkerName(self, workerid):
        return self._workers.get(workerid)

    def getBuildRequest(self, buildrequestid):
        return self._buildrequests.get(buildrequestid)

    def getBuildset(self, buildsetid):
        return self._buildsets.get(buildsetid)

    def getBuildSteps(self, buildid):
        """The steps of a build, as the data API gives them, in step number order."""
        return self._steps.get(buildid)

    def getTestResultSets(self, buildid):
        return self._testResultSets.get(buildid)

    def getBuildTags(self, build):
        """``{'worker', 'branch', 'repository', 'project'}`` of a build, those known.

        A lookup that fails is logged with the build and leaves its tags out: the point is
        still written.
        """
        return self._buildTags.get((build.get('workerid'), build.get('buildrequestid')))

    # -- the lookups ---------------------------------------------------------------------------

    @defer.inlineCallbacks
    def _lookupWorkerName(self, workerid):
        if workerid is None or workerid < 0:
            return None
        worker = yield self.data.get(('workers', workerid))
        return worker['name'] if worker else None

    @defer.inlineCallbacks
    def _lookupBuildTags(self, key):
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
