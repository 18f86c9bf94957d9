"""A wrong master.cfg fails ``buildbot checkconfig`` with a message naming the bad value."""

from __future__ import annotations

import os
import sys

from twisted.internet import defer
from twisted.internet import utils
from twisted.trial import unittest

# a master with one builder 'alpha'; the tests append their c['services']
MASTER_CFG_HEAD = """
from buildbot.plugins import schedulers, steps, util, worker
from buildbot_stats import stats

c = BuildmasterConfig = {}
c['buildbotNetUsageData'] = None
c['workers'] = [worker.Worker('w1', 'pass')]
c['protocols'] = {'pb': {'port': 'tcp:0:interface=127.0.0.1'}}
f = util.BuildFactory([steps.ShellCommand(command=['true'])])
c['builders'] = [util.BuilderConfig(name='alpha', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['alpha'])]
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
"""

SERVICES = """
c['services'] = [
    stats.StatsService(storage_backends=[
        stats.InMemoryStorageService([{captures}]),
    ]),
]
"""


@defer.inlineCallbacks
def runCheckconfig(testcase, text):
    """``buildbot checkconfig`` of a master.cfg holding ``text``: (exit status, output)."""
    basedir = testcase.mktemp()
    os.makedirs(basedir)
    with open(os.path.join(basedir, 'master.cfg'), 'w') as f:
        f.write(text)
    out, err, code = yield utils.getProcessOutputAndValue(
        sys.executable,
        ['-c', 'from buildbot.scripts.runner import run; run()', 'checkconfig', basedir],
        env=dict(os.environ),
    )
    return code, (out + err).decode()


class CheckConfig(unittest.TestCase):
    timeout = 120

    def checkconfig(self, captures):
        return runCheckconfig(self, MASTER_CFG_HEAD + SERVICES.format(captures=captures))

    @defer.inlineCallbacks
    def test_good_config_passes(self):
        code, output = yield self.checkconfig("stats.CaptureBuildDuration('alpha')")
        self.assertEqual(code, 0, output)
        self.assertIn('Config file is good', output)

    @defer.inlineCallbacks
    def test_bad_report_in_fails_naming_the_value(self):
        code, output = yield self.checkconfig(
            "stats.CaptureBuildDuration('alpha', report_in='days')")
        self.assertEqual(code, 1, output)
        self.assertIn("report_in must be one of 'seconds', 'minutes' or 'hours', got 'days'",
                      output)

    @defer.inlineCallbacks
    def test_bad_regex_and_callback_reported_together(self):
        code, output = yield self.checkconfig(
            "stats.CaptureProperty('alpha', 'warn[', regex=True), "
            "stats.CaptureBuildEndTime('alpha', callback='iso')")
        self.assertEqual(code, 1, output)
        self.assertIn("invalid regular expression 'warn['", output)
        self.assertIn("callback must be callable, got 'iso'", output)
