"""CaptureStepTimes: one point per finished step, in the ``steps`` measurement."""

from __future__ import annotations

import re

from twisted.internet import defer

from buildbot import config

from buildbot_stats.captures.base import CaptureError
from buildbot_stats.captures.buildstats import BuildStatsCapture
from buildbot_stats.captures.buildstats import resultName
from buildbot_stats.checks import shown


def checkStepNames(owner, step_names):
    """``step_names`` is None or a list of names (str) and compiled regular expressions."""
    if step_names is None:
        return None
    if isinstance(step_names, (str, re.Pattern)) or not isinstance(step_names, (list, tuple)):
        config.error(f"{owner}: step_names must be a list of step names and compiled regular "
                     f"expressions (re.compile(...)), got {shown(step_names)}")
        return None
    for name in step_names:
        if isinstance(name, re.Pattern):
            continue
        if not isinstance(name, str) or not name:
            config.error(f"{owner}: step_names: {shown(name)} is neither a step name (a non-empty "
                         "string) nor a compiled regular expression")
    return list(step_names)


class CaptureStepTimes(BuildStatsCapture):
    """One point per finished step of each finished build in ``steps``.

    :param step_names: ``None`` (every step) or a list whose items are step names (a string
        matches that name exactly) or compiled regular expressions (``re.compile(...)``,
        the whole name must match)

    Tags: ``builder_name``, ``step_name``, ``result`` (of the step), ``worker``, ``branch``,
    ``repository``, ``project``. Fields: ``step_number`` (int), ``build_number`` (int),
    ``result_code`` (int), ``duration`` (float seconds; absent for a step that never
    started). Time: the step's end.

    ``callback(fields, info)``: ``info`` is ``{'build', 'step', 'builder_name', 'tags'}``.
    A callback that fails for one step is logged; the other steps are still written.
    """

    measurement = 'steps'

    def __init__(self, builder_name=None, step_names=None, callback=None):
        self._step_names = checkStepNames(type(self).__name__, step_names)
        super().__init__(builder_name, callback)

    def describe(self):
        names = None
        if self._step_names is not None:
            names = [n.pattern if isinstance(n, re.Pattern) else n for n in self._step_names]
        return (f"{type(self).__name__}(builder_name={self._builder_name!r}, "
                f"step_names={names!r})")

    def stepMatches(self, name):
        if self._step_names is None:
            return True
        for wanted in self._step_names:
            if isinstance(wanted, re.Pattern):
                if wanted.fullmatch(name):
                    return True
            elif wanted == name:
                return True
        return False

    @defer.inlineCallbacks
    def capture(self, build, builder_name, tags):
        steps = yield self.lookups.getBuildSteps(build['buildid'])
        errors = []
        for step in sorted(steps or [], key=lambda s: s['number']):
            if not step.get('complete') or step.get('complete_at') is None:
                continue
            if not self.stepMatches(step['name']):
                continue
            step_tags = dict(tags, step_name=step['name'], result=resultName(step['results']))
            if step.get('hidden'):
                # hideStepIf: kept, tagged (only then: a visible step's series is as before)
                step_tags['hidden'] = 'true'
            fields = {
                'step_number': step['number'],
                'build_number': build['number'],
                'result_code': step['results'],
            }
            duration = self.durationBetween(step.get('started_at'), step['complete_at'])
            if duration is not None and step.get('started_at') is not None:
                fields['duration'] = duration
            info = {'build': build, 'step': step, 'builder_name': builder_name,
                    'tags': dict(step_tags)}
            # one step that fails never hides the others
            try:
                self.post(build, builder_name, step_tags, fields, info,
                          self.buildTime(build, step['complete_at']))
            except CaptureError as e:
                errors.append(f"step {step['name']!r}: {e}")
        if errors:
            raise CaptureError('; '.join(errors))
