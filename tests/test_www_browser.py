"""The Statistics page in a real browser: Debian's chromium driven by selenium, a real master
with buildbot-www and the page, a real worker, real builds.

Every selenium call blocks, so each check runs in a thread (``deferToThread``); the reactor
keeps serving the page meanwhile.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

from twisted.internet import defer
from twisted.internet import threads
from twisted.trial.unittest import SkipTest

from buildbot_stats import stats
from buildbot_stats.reading.sqlite import openStore
from buildbot_stats.reading.summary import fmtSeconds
from tests.www_master import STORE
from tests.www_master import PageMasterMixin
from tests.www_master import RunMasterBase
from tests.www_master import captures
from tests.www_master import maintainStore
from tests.www_master import oldBuildRow
from tests.www_master import writeRows

CHROMIUM = os.environ.get('BUILDBOT_STATS_CHROMIUM', '/usr/bin/chromium')
CHROMEDRIVER = os.environ.get('BUILDBOT_STATS_CHROMEDRIVER', '/usr/bin/chromedriver')
WAIT = 60  # seconds a browser wait may take on a loaded machine
SCREENSHOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'docs', '_static', 'www-statistics.png')


def makeDriver(profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                 '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
                 '--window-size=1280,1400', f'--user-data-dir={profile}'):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class BrowserMixin:
    """A chromium (``self.driver``) for the test, quit at its end; :meth:`stopAll` for a
    test that runs a master with Buildbot's UI."""

    def setUp(self):
        if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
            raise SkipTest("needs Debian's chromium and chromium-driver packages "
                           "(scripts/install-servers.sh)")
        try:
            import selenium  # noqa: F401
        except ImportError:
            raise SkipTest("needs selenium (pip install -e '.[test]')") from None
        profile = tempfile.mkdtemp(prefix='bbstats-chromium-')
        self.addCleanup(shutil.rmtree, profile, True)
        d = threads.deferToThread(makeDriver, profile)

        def keep(driver):
            self.driver = driver
            self.addCleanup(threads.deferToThread, driver.quit)
        d.addCallback(keep)
        return d

    @defer.inlineCallbacks
    def stopAll(self):
        """The browser, then the master; then the timers autobahn keeps for the closed
        websocket of Buildbot's UI (txaio's batched timers, seconds ahead) are cancelled,
        as nothing is left for them to time out."""
        from twisted.internet import reactor

        yield threads.deferToThread(self.driver.quit)
        yield self.tested_master.shutdown()
        for call in reactor.getDelayedCalls():
            owner = getattr(getattr(call.func, '__self__', None), '__class__', None)
            if owner is not None and owner.__module__.startswith('txaio'):
                call.cancel()


class BrowserTest(BrowserMixin, PageMasterMixin, RunMasterBase):
    timeout = 240

    # -- helpers, each called in a thread ----------------------------------------------------

    def wait(self, condition):
        from selenium.webdriver.support.ui import WebDriverWait
        return WebDriverWait(self.driver, WAIT).until(condition)

    def resolve(self, link):
        """The absolute URL of an SVG ``<a>`` (its ``href`` is an SVGAnimatedString)."""
        return self.driver.execute_script(
            "return new URL(arguments[0].getAttribute('href'), document.baseURI).href", link)

    def durationPoints(self):
        """``{builder: number of build markers}`` of the duration charts in the frame."""
        from selenium.webdriver.common.by import By
        out = {}
        for fig in self.driver.find_elements(By.CSS_SELECTOR,
                                             'figure[data-kind="duration"]'):
            out[fig.get_attribute('data-name')] = len(fig.find_elements(
                By.CSS_SELECTOR, 'g[data-style="points"] circle'))
        return out

    def openFromMenu(self):
        """Buildbot's UI, its Statistics menu entry, the page's frame."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        self.driver.get(self.base)
        entry = self.wait(EC.element_to_be_clickable(
            (By.XPATH, "//a[contains(@href, '#/stats') or .//*[text()='Statistics']]"
                       "[.//text()[normalize-space()='Statistics']]")))
        entry.click()
        self.wait(lambda d: d.current_url.endswith('#/stats'))
        frame = self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, 'iframe.bb-stats')))
        self.driver.switch_to.frame(frame)
        self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, 'section#custom')))

    # -- the checks ---------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_menu_chart_filters_hover_and_link(self):
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import Select

        # the store keeps raw points 15 days, their rollups for ever
        yield self.startMaster(backends=[stats.SQLiteStorageService(
            path=STORE, captures=captures(), flush_interval=0.1, name='sqlite', keep='15d')])
        builds = yield self.runBuilds([('alpha', False), ('beta', False), ('alpha', True),
                                       ('alpha', False), ('beta', False)])
        ids = {b['name']: b['builderid'] for b in (yield self.master.data.get(('builders',)))}
        # history: a build of beta 10 days ago, outside the default 7 days, and three 20
        # days ago, which the retention prunes once their days are rolled up (by the
        # master's own writer, while it writes)
        old = [(900, 42.0, 10), (901, 40.0, 20), (902, 46.0, 20.01), (903, 44.0, 20.02)]
        yield writeRows(self.storePath(), [oldBuildRow('beta', n, d, time.time() - days * 86400)
                                           for n, d, days in old])
        yield maintainStore(self.master)
        with openStore(self.storePath()) as reader:
            kept = [n for _, n, _ in reader.buildDurations('beta')['beta']]
            beta = reader.summarize('durations', 'beta')['beta']
        self.assertEqual(sorted(kept), sorted([900] + [b['number'] for b in builds
                                                       if b['builderid'] == ids['beta']]))
        durations = [42.0, 40.0, 46.0, 44.0] + [
            (b['complete_at'] - b['started_at']).total_seconds() for b in builds
            if b['builderid'] == ids['beta']]
        self.assertEqual((beta.count, beta.median, beta.p90),
                         (6, statistics.median(durations), sorted(durations)[5]))

        def menuAndChart():
            self.openFromMenu()
            return self.durationPoints()
        # one point per build of the default range (7 days)
        self.assertEqual((yield threads.deferToThread(menuAndChart)), {'alpha': 3, 'beta': 2})

        def screenshot():
            self.driver.switch_to.default_content()
            os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
            self.driver.save_screenshot(SCREENSHOT)
            self.driver.switch_to.frame(self.driver.find_element(By.CSS_SELECTOR,
                                                                  'iframe.bb-stats'))
        if os.environ.get('BUILDBOT_STATS_SCREENSHOT'):
            yield threads.deferToThread(screenshot)

        def hover():
            out = {}
            for circle in self.driver.find_elements(
                    By.CSS_SELECTOR, 'figure[data-name="alpha"] g[data-style="points"] a circle'):
                ActionChains(self.driver).move_to_element(circle).perform()
                title = circle.find_element(By.TAG_NAME, 'title').get_attribute('textContent')
                out[title] = self.resolve(circle.find_element(By.XPATH, '..'))
            return out
        hovers = yield threads.deferToThread(hover)
        alpha = [b for b in builds if b['builderid'] == ids['alpha']]
        self.assertEqual(len(hovers), len(alpha))
        for b in alpha:
            [title] = [t for t in hovers if t.startswith(f"alpha build #{b['number']}:")]
            self.assertRegex(title, r'^alpha build #%d: duration \d+\.\d\ds at '
                             r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$' % b['number'])
            self.assertEqual(hovers[title],
                             f"{self.base}#/builders/{ids['alpha']}/builds/{b['number']}")

        def chooseBuilder():
            Select(self.driver.find_element(By.NAME, 'builder')).select_by_visible_text('beta')
            self.driver.find_element(By.CSS_SELECTOR, 'form.filters button').click()
            self.wait(EC.presence_of_element_located(
                (By.CSS_SELECTOR, 'option[value="beta"][selected]')))
            return self.durationPoints()
        self.assertEqual((yield threads.deferToThread(chooseBuilder)), {'beta': 2})

        def chooseRange(name):
            self.driver.find_element(By.LINK_TEXT, name).click()
            self.wait(EC.presence_of_element_located(
                (By.XPATH, f"//a[contains(@class, 'current')][text()='{name}']")))
            return self.durationPoints()
        # every range reaching before the raw points kept: the median and p90 per period,
        # from the rollups, no build to hover; the table counts every build
        self.assertEqual((yield threads.deferToThread(chooseRange, 'all')), {'beta': 0})

        def builderRow():
            return [td.text for td in self.driver.find_elements(
                By.CSS_SELECTOR, 'table.builders tr:nth-child(2) td')]
        row = yield threads.deferToThread(builderRow)
        self.assertEqual(row[:4], ['beta', '6', fmtSeconds(beta.median), fmtSeconds(beta.p90)])
        self.assertEqual((yield threads.deferToThread(chooseRange, '24h')), {'beta': 2})

        def clickBuild():
            chooseRange('7d')
            # the newest build's marker, drawn last, so on top of any it overlaps
            link = self.driver.find_elements(
                By.CSS_SELECTOR, 'figure[data-name="beta"] g[data-style="points"] a')[-1]
            href = self.resolve(link)
            ActionChains(self.driver).move_to_element(
                link.find_element(By.TAG_NAME, 'circle')).click().perform()
            self.driver.switch_to.default_content()
            self.wait(lambda d: '#/builders/' in d.current_url)
            return href, self.driver.current_url
        href, url = yield threads.deferToThread(clickBuild)
        self.assertEqual(url, href)
        yield self.stopAll()

    @defer.inlineCallbacks
    def test_anonymous_browser_sees_no_data_when_authz_restricts(self):
        from selenium.webdriver.common.by import By

        yield self.startMaster(restricted=True)
        yield self.runBuilds([('beta', False)])

        def look():
            self.driver.get(self.base + '#/stats')
            message = self.wait(lambda d: [e.text for e in d.find_elements(
                By.CSS_SELECTOR, 'p.bb-stats-refused')])
            frames = self.driver.find_elements(By.CSS_SELECTOR, 'iframe.bb-stats')
            self.driver.get(self.base + 'plugins/wsgi_dashboards/stats/view?range=all')
            direct = self.driver.find_element(By.TAG_NAME, 'body').text
            svgs = self.driver.find_elements(By.TAG_NAME, 'svg')
            return message[0], len(frames), direct, len(svgs)
        message, frames, direct, svgs = yield threads.deferToThread(look)
        self.assertIn('You may not see the statistics', message)
        self.assertEqual(frames, 0)
        self.assertIn('You may not see the builds', direct)
        self.assertNotIn('beta', direct)
        self.assertEqual(svgs, 0)
        yield self.stopAll()
