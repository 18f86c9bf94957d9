"""The master.cfg that ``buildbot-stats demo`` writes: a small sample project, and an example
of buildbot_stats configuration a user can copy."""

MASTER_CFG = '''\
# -*- python -*-
# A small Buildbot master that keeps build statistics with buildbot_stats.
# Written by `buildbot-stats demo`: copy what you need into your own master.cfg.
import random

from twisted.internet import defer

from buildbot.plugins import schedulers
from buildbot.plugins import steps
from buildbot.plugins import util
from buildbot.plugins import worker
from buildbot.process.buildstep import BuildStep
from buildbot.process.results import SUCCESS

from buildbot_stats import stats

c = BuildmasterConfig = {}
c['title'] = "Stats demo"  # Buildbot shows at most 18 characters
c['buildbotNetUsageData'] = None
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
# the demo's worker runs in the same process and connects over loopback
c['protocols'] = {'pb': {'port': 'tcp:@PORT@:interface=127.0.0.1'}}
c['workers'] = [worker.Worker('demo-worker', 'demo-password')]
c['collapseRequests'] = False


def drifting(base, growth=0.0, spread=0.3):
    """A number that drifts with the build number, plus noise: something for the charts."""

    @util.renderer
    def render(props):
        n = props.getProperty('buildnumber') or 0
        return base * (1 + growth * n) * random.uniform(1 - spread, 1 + spread)

    return render


@util.renderer
def sleep_command(props):
    # each builder's step duration: base seconds and growth per build (property 'pace')
    base, growth = props.getProperty('pace')
    n = props.getProperty('buildnumber') or 0
    return ['sleep', f"{base * (1 + growth * n) * random.uniform(0.7, 1.3):.2f}"]


@util.renderer
def compiler_output(props):
    # fewer warnings as the project gets cleaned up
    n = props.getProperty('buildnumber') or 0
    count = max(0, int(12 - 0.4 * n + random.randint(-2, 2)))
    return ['sh', '-c', f'for i in $(seq {count}); do echo "src/m$i.c: warning: unused"; done']


def count_warnings(rc, stdout, stderr):
    return {'warnings': sum(1 for line in stdout.splitlines() if 'warning:' in line)}


class ReportCoverage(stats.StatsStepMixin, BuildStep):
    """A custom step that reports a coverage figure through the stats service."""

    name = 'coverage'

    @defer.inlineCallbacks
    def run(self):
        n = self.getProperty('buildnumber') or 0
        percent = round(min(97.0, 71.0 + 0.8 * n + random.uniform(-1.5, 1.5)), 1)
        lines = 4000 + 25 * n
        # -> series 'test-coverage', fields percent and lines, tags builder_name/build_number
        yield self.yieldMetricsValue('coverage', {'percent': percent, 'lines': lines})
        self.setProperty('tests_run', 180 + 4 * n, 'ReportCoverage')
        self.descriptionDone = [f'coverage {percent}%']
        return SUCCESS


compile_factory = util.BuildFactory([
    steps.SetProperty(property='pace', value=[0.8, 0.25], hideStepIf=True),
    steps.ShellCommand(name='compile', command=sleep_command),
    steps.SetPropertyFromCommand(name='count warnings', command=compiler_output,
                                 extract_fn=count_warnings),
])
test_factory = util.BuildFactory([
    steps.SetProperty(property='pace', value=[1.2, 0.0], hideStepIf=True),
    steps.ShellCommand(name='unit tests', command=sleep_command),
    ReportCoverage(),
])
docs_factory = util.BuildFactory([
    steps.SetProperty(property='pace', value=[1.2, -0.05], hideStepIf=True),
    steps.ShellCommand(name='build docs', command=sleep_command),
    steps.SetProperty(property='pages', value=util.Transform(round, drifting(120, 0.01, 0.02))),
])

c['builders'] = [
    util.BuilderConfig(name='compile', workernames=['demo-worker'], factory=compile_factory),
    util.BuilderConfig(name='test', workernames=['demo-worker'], factory=test_factory),
    util.BuilderConfig(name='docs', workernames=['demo-worker'], factory=docs_factory),
]
c['schedulers'] = [
    schedulers.ForceScheduler(name='force', builderNames=['compile', 'test', 'docs']),
]

# --- build statistics -------------------------------------------------------------------
# Every point goes to stats.sqlite in this directory (the embedded store). Without
# storage_backends, stats.StatsService() keeps start time, end time and duration of every
# build there; here we also capture properties and the data the custom step reports.
captures = [
    stats.CaptureBuildStartTimeAllBuilders(),
    stats.CaptureBuildEndTimeAllBuilders(),
    stats.CaptureBuildDurationAllBuilders(),             # series <builder>-build-times
    stats.CaptureProperty('compile', 'warnings'),        # series compile-warnings
    stats.CaptureProperty('test', 'tests_run'),          # series test-tests_run
    stats.CaptureProperty('docs', 'pages'),              # series docs-pages
    stats.CaptureDataAllBuilders('coverage'),            # series test-coverage
]
# append: a master.cfg that has reporters (mail, GitHub status) in c['services'] keeps them
c.setdefault('services', []).append(
    stats.StatsService(storage_backends=[
        stats.SQLiteStorageService('stats.sqlite', captures=captures),
    ]),
)
'''

# Appended to MASTER_CFG by ``buildbot-stats demo --serve``: Buildbot's web UI with the
# Statistics page, and the build statistics captures that fill the page's other panels.
SERVE_CFG = '''
# --- the web UI and its Statistics page (buildbot-stats demo --serve) --------------------
# pip install 'buildbot_stats[www]' brings buildbot-www, buildbot-wsgi-dashboards and Flask.
captures += [
    stats.CaptureBuildResults(),                         # builds: success rate, failures
    stats.CaptureQueueTimes(),                           # build_requests: queue time
    stats.CaptureStepTimes(),                            # steps: the slowest steps
]
c['buildbotURL'] = 'http://127.0.0.1:@WWWPORT@/'
c.setdefault('www', {})['port'] = 'tcp:@WWWPORT@:interface=127.0.0.1'
# the one entry that adds the Statistics page (menu entry "Statistics"), beside the
# plugins and dashboards c['www'] may already have
c['www'].setdefault('plugins', {}).setdefault('wsgi_dashboards', []).append(
    stats.statsDashboard())
'''
