"""CaptureQueueTimes: how long builds waited, in the ``build_requests`` measurement."""

from __future__ import annotations

from twisted.internet import defer

from buildbot_stats.captures.base import CaptureError
from buildbot_stats.captures.buildstats import BuildStatsCapture
from buildbot_stats.captures.buildstats import resultName


class CaptureQueueTimes(BuildStatsCapture):
    """One point per finished build in ``build_requests``.

    Fields: ``queue_time`` (float seconds from the build request's submission to the build's
    start), ``turnaround_time`` (float seconds from the buildset's submission to the build's
    end), ``build_number`` (int). Tags: ``builder_name``, ``result`` (of the build),
    ``worker``, ``branch``, ``repository``, ``project``. Time: the build's end.

    A build request that never became a build (cancelled while waiting) writes no point;
    a build retried after a lost worker counts its queue time from the request's first
    submission.

    ``callback(fields, info)``: ``info`` is ``{'build', 'buildrequest', 'buildset',
    'builder_name', 'tags'}`` (the data API dicts).
    """

    measurement = 'build_requests'

    @defer.inlineCallbacks
    def capture(self, build, builder_name, tags):
        where = f"build #{build.get('number')} of builder {builder_name!r}"
        request = yield self.lookups.getBuildRequest(build.get('buildrequestid'))
        if not request:
            raise CaptureError(f"{self.describe()}: no build request "
                               f"{build.get('buildrequestid')!r} for {where}")
        buildset = yield self.lookups.getBuildset(request['buildsetid'])
        if not buildset:
            raise CaptureError(f"{self.describe()}: no buildset {request['buildsetid']!r} "
                               f"for {where}")
        tags['result'] = resultName(build.get('results'))
        fields = {'build_number': build['number']}
        queue_time = self.durationBetween(request.get('submitted_at'), build.get('started_at'))
        if queue_time is not None:
            fields['queue_time'] = queue_time
        turnaround = self.durationBetween(buildset.get('submitted_at'), build.get('complete_at'))
        if turnaround is not None:
            fields['turnaround_time'] = turnaround
        info = {'build': build, 'buildrequest': request, 'buildset': buildset,
                'builder_name': builder_name, 'tags': dict(tags)}
        self.post(build, builder_name, tags, fields, info,
                  self.buildTime(build, build['complete_at']))
