"""CaptureBuildResults: the result of every finished build, in the ``builds`` measurement."""

from __future__ import annotations

from buildbot.process.results import SUCCESS
from buildbot.process.results import WARNINGS

from buildbot_stats.captures.buildstats import BuildStatsCapture
from buildbot_stats.captures.buildstats import resultName


class CaptureBuildResults(BuildStatsCapture):
    """One point per finished build in ``builds``.

    Tags: ``builder_name``, ``result`` (``success``, ``warnings``, ``failure``, ``skipped``,
    ``exception``, ``retry``, ``cancelled``), ``worker``, ``branch``, ``repository``,
    ``project``. Fields: ``result_code`` (int, 0-6), ``success`` (int, 1 when the build
    passed: success or warnings, else 0), ``build_number`` (int), ``duration`` (float
    seconds). Time: the build's end.

    ``callback(fields, info)``: ``info`` is ``{'build': <build dict>, 'builder_name': ...,
    'tags': {...}}``.
    """

    measurement = 'builds'

    def capture(self, build, builder_name, tags):
        code = build.get('results')
        tags['result'] = resultName(code)
        fields = {
            'result_code': code,
            'success': 1 if code in (SUCCESS, WARNINGS) else 0,
            'build_number': build['number'],
        }
        duration = self.durationBetween(build.get('started_at'), build.get('complete_at'))
        if duration is not None:
            fields['duration'] = duration
        info = {'build': build, 'builder_name': builder_name, 'tags': dict(tags)}
        self.post(build, builder_name, tags, fields, info,
                  self.buildTime(build, build['complete_at']))
