"""Change detection on a real master with a real worker and real builds: a builder whose step
sleeps 1 s for 10 builds, then 5 s for 10 (each build from a change, by its author), and a
steady builder's 20 builds of 3 s run at the same time on the same master. Exactly one change,
for the worse, at build 11 of the slowing builder, about +400 %, named with its revision and
its change; none for the steady builder. Then the same master shows it: the Statistics page in a
real browser (the Changes panel and the marker on the chart), ``buildbot-stats
regressions`` (exit status 1) and /metrics."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess

from twisted.internet import defer
from twisted.internet import threads
from twisted.python import log
from twisted.trial.unittest import SkipTest

from buildbot.plugins import schedulers
from buildbot.plugins import steps
from buildbot.plugins import util

from buildbot_stats import stats
from buildbot_stats.analysis import changepoints
from buildbot_stats.cli import main as cli_main
from buildbot_stats.reading.sqlite import openStore
from tests.test_cli import command
from tests.test_www_browser import BrowserMixin
from tests.waiting import waitUntil
from tests.www_master import PageMasterMixin
from tests.www_master import RunMasterBase

STORE = 'stats.sqlite'
SLOW_FROM = 11  # the first build that sleeps SLOW_SLEEP
SLOWING_BUILDS = 20
#: The slowing builder's sleeps, before and from build SLOW_FROM: 4 s apart, so that a burst
#: of load (a 1 s build recorded as 3 s, once) leaves the builds before the change nearer
#: the 1 s than the 5 s ones, and the change where it began.
FAST_SLEEP, SLOW_SLEEP = '1', '5'
STEADY_BUILDS = 20
#: The steady builder's sleep: Buildbot stamps builds in whole seconds, so a 3 s build is
#: recorded as 3 or 4 s. A burst of load adds a second to the builds it covers: +25-33 % here,
#: where a 0.5 s sleep (0 or 1 s) went to 1 or 2 s, +100 % or more; and a burst must last
#: 5 builds (min_builds), here 17 s and more, and longer still for the significance test.
STEADY_SLEEP = '3'


def masterConfig():
    c = {}
    c['schedulers'] = [
        schedulers.AnyBranchScheduler(name='commits', builderNames=['slowing'],
                                      treeStableTimer=None),
        schedulers.ForceScheduler(name='force', builderNames=['steady']),
    ]
    slowing = util.BuildFactory([steps.ShellCommand(
        name='work', command=['sleep', util.Property('sleep', default=FAST_SLEEP)])])
    steady = util.BuildFactory([steps.ShellCommand(name='work', command=['sleep', STEADY_SLEEP])])
    c['builders'] = [
        util.BuilderConfig(name='slowing', workernames=['local1'], factory=slowing,
                           collapseRequests=False),
        util.BuilderConfig(name='steady', workernames=['local1'], factory=steady,
                           collapseRequests=False),
    ]
    captures = [stats.CaptureBuildDurationAllBuilders(), stats.CaptureBuildResults()]
    c['services'] = [stats.StatsService(
        storage_backends=[
            stats.SQLiteStorageService(path=STORE, captures=captures, flush_interval=0.1,
                                       name='sqlite'),
            stats.PrometheusStorageService(port=None, name='prom'),
        ],
        regressions=stats.Regressions(), name='StatsService')]
    c['www'] = {'port': 'tcp:0:interface=127.0.0.1',
                'plugins': {'wsgi_dashboards': [stats.statsDashboard()], 'metrics': {}}}
    return c


class RegressionsOnAMaster(BrowserMixin, PageMasterMixin, RunMasterBase):
    timeout = 300

    def setUp(self):
        if not changepoints.available():
            raise SkipTest("needs apache-otava (pip install 'buildbot_stats[regressions]')")
        self.logged = []
        observer = self.logged.append
        log.addObserver(observer)
        self.addCleanup(log.removeObserver, observer)
        return BrowserMixin.setUp(self)

    @defer.inlineCallbacks
    def runEveryBuild(self):
        """20 builds of steady and 20 of slowing, at once; each build of slowing from its
        own change (revision rev<n>, by dev<n>, alice's the 11th), one at a time."""
        finished = {}
        new_buildsets = []

        def onFinished(_, build):
            finished[build['builderid']] = finished.get(build['builderid'], 0) + 1

        def onBuildset(_, bs):
            if "'commits'" in (bs.get('reason') or ''):
                new_buildsets.append(bs['bsid'])
        consumers = [
            (yield self.master.mq.startConsuming(onFinished, ('builds', None, 'finished'))),
            (yield self.master.mq.startConsuming(onBuildset, ('buildsets', None, 'new'))),
        ]
        for _ in range(STEADY_BUILDS):
            yield self.master.data.control('force', {'builderNames': ['steady']},
                                           ('forceschedulers', 'force'))
        for n in range(1, SLOWING_BUILDS + 1):
            author = 'alice <alice@example.org>' if n == SLOW_FROM else f'dev{n}'
            comment = 'Sleep five seconds' if n == SLOW_FROM else f'change {n}'
            yield self.master.data.updates.addChange(
                author=author, comments=comment, revision=f'rev{n}', branch='main',
                repository='repo', project='proj', files=['work.sh'], category=None,
                properties={'sleep': SLOW_SLEEP if n >= SLOW_FROM else FAST_SLEEP},
                codebase='')
            # one buildset per change, in order: build <n> is change <n>'s
            yield waitUntil(lambda n=n: len(new_buildsets) >= n, f"the buildset of change {n}")
        ids = {b['name']: b['builderid'] for b in (yield self.master.data.get(('builders',)))}
        yield waitUntil(lambda: (finished.get(ids['slowing'], 0) >= SLOWING_BUILDS
                                 and finished.get(ids['steady'], 0) >= STEADY_BUILDS),
                        "every build", timeout=240)
        for consumer in consumers:
            consumer.stopConsuming()
        return ids

    @defer.inlineCallbacks
    def test_a_slowdown_found_attributed_and_shown(self):
        yield self.start()
        ids = yield self.runEveryBuild()
        svc = self.master.service_manager.namedServices['StatsService']
        regressions = svc.regressions
        yield waitUntil(lambda: regressions._ready and regressions._round is None
                        and not regressions._dirty, "the analyses after the last build")
        for backend in svc.backends:
            yield backend.flush(30)

        # the store: exactly one change, the slowdown at build SLOW_FROM, attributed
        with openStore(os.path.join(self.master.basedir, STORE)) as store:
            durations = store.buildDurations()
            kept = store.changePoints()
        self.assertEqual(len(durations['slowing']), SLOWING_BUILDS)
        self.assertEqual(len(durations['steady']), STEADY_BUILDS)
        # what to look at when it fails: each builder's durations, by build number
        seen = {b: [d for _, _, d in sorted(rows, key=lambda r: r[1])]
                for b, rows in durations.items()}
        self.assertEqual(len(kept), 1, (kept, seen))
        [change] = kept
        self.assertEqual((change['builder'], change['series'], change['direction']),
                         ('slowing', 'duration', 'up'))
        self.assertEqual((change['build_number'], change['last_build_number']),
                         (SLOW_FROM, SLOW_FROM - 1), (change, seen))
        self.assertTrue(change['worse'])
        self.assertFalse(change['withdrawn'])
        # whole seconds: 1 or 2 s before, 5 or 6 s after; about +400 %
        self.assertIn(change['before'], (1.0, 1.5, 2.0))
        self.assertIn(change['after'], (5.0, 5.5, 6.0))
        self.assertGreaterEqual(change['size'], 1.5)
        self.assertLessEqual(change['size'], 5.0)
        self.assertEqual(change['revision'], f'rev{SLOW_FROM}')
        self.assertEqual(change['branch'], 'main')
        self.assertEqual(change['changes'], 1)
        self.assertEqual(change['authors'], ['alice <alice@example.org>'])
        self.assertEqual(change['comments'], ['Sleep five seconds'])
        self.assertGreater(change['confidence'], 0.999)
        self.assertTrue(change['url'].endswith(f"#/builders/{ids['slowing']}/builds/{SLOW_FROM}"))
        # one log line for it
        lines = [' '.join(map(str, e.get('message') or ())) for e in self.logged]
        announced = [line for line in lines if "regressions: slowing: build duration" in line]
        self.assertEqual(len(announced), 1, announced)
        self.assertIn(f"since build #{SLOW_FROM} (revision rev{SLOW_FROM}; branch main; "
                      "1 change by alice <alice@example.org>)", announced[0])
        self.assertFalse([line for line in lines if "regressions: steady:" in line], seen)
        self.assertEqual(regressions.openSlowdowns(), {('slowing', 'duration'): 1})

        # /metrics
        status, body, _ = yield self.get('plugins/metrics')
        self.assertEqual(status, 200)
        self.assertIn('buildbot_stats_open_slowdowns{builder="slowing",series="duration"} 1.0',
                      body)
        self.assertNotIn('buildbot_stats_open_slowdowns{builder="steady"', body)
        self.assertRegex(body, r'buildbot_build_last_finished_timestamp_seconds'
                               r'\{builder="steady"\} \d\.\d+e\+09')

        # the command: exit status 1, the change named; steady alone: 0
        store_path = os.path.join(self.master.basedir, STORE)
        done = yield threads.deferToThread(
            subprocess.run, command() + ['regressions', store_path], capture_output=True,
            text=True, timeout=120)
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        # its own full analysis: all 10 builds after the change make its medians, where the
        # master announced it after 5 (a build slowed by the machine's load moves one)
        size = re.search(r"slowing: build duration \+(\d+)% slower", done.stdout)
        self.assertIsNotNone(size, done.stdout)
        self.assertTrue(150 <= int(size.group(1)) <= 500, done.stdout)
        self.assertIn(f"since build #{SLOW_FROM} (worse)", done.stdout)
        self.assertIn(f"revision rev{SLOW_FROM}, branch main, 1 change by alice "
                      "<alice@example.org>, confidence", done.stdout)
        out = io.StringIO()
        status = yield threads.deferToThread(cli_main.main, [
            'regressions', store_path, '--builder', 'steady', '--format', 'json'], out)
        self.assertEqual(status, 0, out.getvalue())
        self.assertEqual(json.loads(out.getvalue())['changes'], [])

        # the page, in a real browser: the Changes panel, the marker where it began
        def look():
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support import expected_conditions as EC
            from selenium.webdriver.support.ui import WebDriverWait

            self.driver.get(self.base + '#/stats')
            frame = WebDriverWait(self.driver, 60).until(
                EC.presence_of_element_located((By.CSS_SELECTOR, 'iframe.bb-stats')))
            self.driver.switch_to.frame(frame)
            WebDriverWait(self.driver, 60).until(
                EC.presence_of_element_located((By.CSS_SELECTOR, 'table.changes')))
            rows = [[td.text for td in tr.find_elements(By.TAG_NAME, 'td')] for tr in
                    self.driver.find_elements(By.CSS_SELECTOR, 'table.changes tr')[1:]]
            link = self.driver.find_element(By.CSS_SELECTOR, 'table.changes td a')
            href = self.driver.execute_script(
                "return new URL(arguments[0].getAttribute('href'), document.baseURI).href",
                link)
            events = {}
            for fig in self.driver.find_elements(By.CSS_SELECTOR,
                                                 'figure[data-kind="duration"]'):
                events[fig.get_attribute('data-name')] = [
                    g.find_element(By.TAG_NAME, 'title').get_attribute('textContent')
                    for g in fig.find_elements(By.CSS_SELECTOR, 'g.event')]
            return rows, href, events
        rows, href, events = yield threads.deferToThread(look)
        self.assertEqual(len(rows), 1, rows)
        row = rows[0]
        self.assertEqual(row[1:3], ['slowing', 'build duration'])
        self.assertIn('slower', row[3])
        self.assertEqual(row[5:8], [f'#{SLOW_FROM}', f'rev{SLOW_FROM}', 'main'])
        self.assertEqual(row[8], '1 by alice <alice@example.org>: Sleep five seconds')
        self.assertEqual(href, f"{self.base}#/builders/{ids['slowing']}/builds/{SLOW_FROM}")
        self.assertEqual(events['steady'], [])
        [title] = events['slowing']
        self.assertIn(f"since build #{SLOW_FROM}, revision rev{SLOW_FROM}", title)
        yield self.stopAll()

    @defer.inlineCallbacks
    def start(self):
        yield self.setup_master(masterConfig())
        self.master = self.tested_master.master
        self.base = f"http://127.0.0.1:{self.master.www.getPortnum()}/"
