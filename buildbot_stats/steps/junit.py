"""JUnitResults: a build step that reads the JUnit/xUnit XML reports a test run left on the
worker and submits every test to Buildbot's own test result API.

In ``master.cfg``::

    f.addStep(steps.ShellCommand(command=['pytest', '--junitxml=report.xml'],
                                 flunkOnFailure=False))
    f.addStep(stats.JUnitResults(path='report.xml'))

The reports are streamed from the worker a block at a time and read as they arrive
(:mod:`~buildbot_stats.steps.junitxml`); the results go to Buildbot's data API
(``/api/v2/test_result_sets/N/results``) as:

* a ``pass_fail`` set (value unit ``boolean``): ``1`` per passed test (a flaky one
  included: it passed in the end), ``0`` per failed or errored one;
* a ``skip_only`` set with the skipped tests, when there are any;
* a ``rerun_fail`` set with one ``0`` per failed attempt of a test that passed on a rerun
  (Surefire's ``<flakyFailure>``, a repeated ``<testcase>``): the failures a reader of the
  final results alone would not see.

The step's summary reads ``512 passed, 3 failed, 2 skipped (1 flaky)``.
"""

from __future__ import annotations

import functools
import inspect

from twisted.internet import defer
from twisted.internet import task
from twisted.python import log

from buildbot import config
from buildbot.process import buildstep
from buildbot.process import remotecommand
from buildbot.process.results import FAILURE
from buildbot.process.results import SUCCESS
from buildbot.process.results import WARNINGS
from buildbot.process.results import Results
from buildbot.process.results import worst_status
from buildbot.steps.worker import CompositeStepMixin
from buildbot.worker.protocols import base as protocols

from buildbot_stats.checks import checkArguments
from buildbot_stats.checks import countProblem
from buildbot_stats.checks import report
from buildbot_stats.checks import shown
from buildbot_stats.outcomes import FAILED
from buildbot_stats.outcomes import FLAKY
from buildbot_stats.outcomes import PASSED
from buildbot_stats.outcomes import RERUN_CATEGORY
from buildbot_stats.outcomes import SKIP_CATEGORY
from buildbot_stats.outcomes import SKIPPED
from buildbot_stats.outcomes import summaryText
from buildbot_stats.slices import cyclicGCPaused
from buildbot_stats.steps.junitxml import MAX_NAME
from buildbot_stats.steps.junitxml import Collector
from buildbot_stats.steps.junitxml import ReportError
from buildbot_stats.steps.junitxml import ReportParser

#: the largest report read (bytes); the worker sends no more
DEFAULT_MAX_SIZE = 256 * 1024 * 1024
#: bytes per block the worker sends: a block is read in a few milliseconds
BLOCK_SIZE = 32 * 1024
#: results handed to Buildbot's test result API per reactor turn
SUBMIT_SLICE = 2000
#: failed tests named in the ``failed tests`` log, at most
MAX_LISTED = 1000
RESULTS = (SUCCESS, WARNINGS, FAILURE)
GLOB_CHARS = frozenset('*?[')


class ReportWriter(protocols.FileWriterImpl):
    """What the worker's ``uploadFile`` writes to: each block goes to the parser at once,
    nothing to disk; at most ``max_size`` bytes are read."""

    def __init__(self, parser, max_size):
        self.parser = parser
        self.remaining = max_size
        self.cut = False
        self.closed = False

    def remote_write(self, data):
        if isinstance(data, str):
            data = data.encode('utf-8')
        if len(data) > self.remaining:
            data = data[:self.remaining]
            self.cut = True
        self.remaining -= len(data)
        if data:
            # a block is read in about a millisecond; the test cases it keeps must not
            # set off a collection of the master's whole heap meanwhile
            with cyclicGCPaused():
                self.parser.feed(data)

    def remote_utime(self, accessed_modified):
        pass

    def remote_close(self):
        self.closed = True

    def remote_unpack(self):
        pass

    def cancel(self):
        pass


def _checkResult(owner, name, value):
    if value not in RESULTS:
        config.error(f"{owner}: {name} must be util.SUCCESS, util.WARNINGS or util.FAILURE, "
                     f"got {shown(value)}")


def _checkedStepInit(init):
    """``init`` (a step's ``__init__`` whose ``**kwargs`` go to BuildStep) with its
    argument mistakes as configuration errors naming the step
    (:func:`~buildbot_stats.checks.checkArguments`): its own arguments and BuildStep's are
    declared, a misspelt one is named with the nearest, too many positional ones are one
    message, never a TypeError whose traceback quotes the master.cfg line."""
    sig = inspect.signature(init)
    declared = sig.replace(parameters=[p for p in sig.parameters.values()
                                       if p.kind is not p.VAR_KEYWORD])

    def arguments(*args, **kwargs):
        pass
    arguments.__signature__ = declared
    steps_own = tuple(buildstep.BuildStep._params_names)

    @functools.wraps(init)
    def checked(self, *args, **kwargs):
        args, kwargs = checkArguments(type(self).__name__, arguments, (self,) + args, kwargs,
                                      also=steps_own)
        return init(*args, **kwargs)
    return checked


def _paths(path):
    return [path] if isinstance(path, str) else list(path)


class JUnitResults(buildstep.BuildStep, CompositeStepMixin):
    """Reads JUnit/xUnit XML reports from the worker into Buildbot's test result API.

    :param path: the report, relative to ``workdir``: a path or a shell glob
        (``'reports/*.xml'``, ``'**/TEST-*.xml'``), or a list of them; renderable
    :param workdir: where ``path`` is relative to (default: the build's workdir, as for
        every step)
    :param on_failures: the step's result when a test failed (default ``util.FAILURE``;
        ``util.WARNINGS`` or ``util.SUCCESS`` to let the build pass)
    :param on_bad_report: the step's result when a report is missing, malformed, empty,
        refused or larger than ``max_size`` (default ``util.WARNINGS``); the tests of the
        other reports are submitted all the same
    :param max_size: the largest report read, in bytes (default 256 MiB)

    Every other argument is a :class:`~buildbot.process.buildstep.BuildStep`'s (``name``
    defaults to ``'test results'``).
    """

    name = 'test results'
    description = ['reading test reports']
    renderables = ['path']
    flunkOnFailure = True
    haltOnFailure = False
    # the glob and upload commands' own log lines (CompositeStepMixin reads it)
    logEnviron = False

    @_checkedStepInit
    def __init__(self, path, on_failures=FAILURE, on_bad_report=WARNINGS,
                 max_size=DEFAULT_MAX_SIZE, **kwargs):
        owner = type(self).__name__
        if not (isinstance(path, str) and path) and not (
                isinstance(path, (list, tuple)) and path
                and all(isinstance(p, str) and p for p in path)) \
                and not hasattr(path, 'getRenderingFor'):
            config.error(f"{owner}: path must be a path, a glob or a list of them, got "
                         f"{shown(path)}")
        _checkResult(owner, 'on_failures', on_failures)
        _checkResult(owner, 'on_bad_report', on_bad_report)
        report(owner, countProblem('max_size', max_size))  # bytes
        super().__init__(**kwargs)
        self.path = path
        self.on_failures = on_failures
        self.on_bad_report = on_bad_report
        self.max_size = max_size
        self.summary = None

    # -- the run ------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def run(self):
        self.checkWorkerHasCommand('uploadFile')
        self.reports_log = yield self.addLog('reports')
        collector = Collector()
        problems = []
        files = yield self._findReports(problems)
        for path in files:
            try:
                yield self._readReport(path, collector, problems)
            except Exception as e:  # a bug or a lost worker: this report, not the build
                log.err(e, f"buildbot_stats: JUnitResults: reading {path}")
                problems.append(path)
                yield self.reports_log.addStderr(
                    f"{path}: could not be read: {type(e).__name__}: {e}\n")
        if collector.long_names:
            yield self.reports_log.addStdout(
                f"{collector.long_names} test names were longer than {MAX_NAME} characters "
                "and are cut\n")
        cases = collector.sorted()
        counts = yield self._submit(cases)
        passed, failed, skipped, flaky = counts
        self.summary = summaryText(passed, failed, skipped, flaky)
        self.descriptionDone = [self.summary]
        yield self.reports_log.addStdout(f"{len(files)} report(s): {self.summary}\n")
        if failed:
            names = [c.name for c in cases if c.outcome == FAILED]
            text = "\n".join(names[:MAX_LISTED]) + "\n"
            if len(names) > MAX_LISTED:
                text += f"... and {len(names) - MAX_LISTED} more\n"
            yield self.addCompleteLog('failed tests', text)
        result = SUCCESS
        if failed:
            result = worst_status(result, self.on_failures)
        if problems:
            result = worst_status(result, self.on_bad_report)
            yield self.reports_log.addStderr(f"{len(problems)} problem(s); the step is "
                                             f"{Results[self.on_bad_report]} for them\n")
        yield self.reports_log.finish()
        return result

    @defer.inlineCallbacks
    def _findReports(self, problems):
        """The paths of the reports on the worker (globs expanded, sorted, each once)."""
        found = []
        for pattern in _paths(self.path):
            if not GLOB_CHARS & set(pattern):
                found.append(pattern)
                continue
            where = self.build.path_module.join(self.workdir, pattern)
            matches = yield self.runGlob(where, abandonOnFailure=False)
            matches = sorted(matches or [])
            if not matches:
                problems.append(pattern)
                yield self.reports_log.addStderr(f"{pattern}: no report matches\n")
            found.extend(m for m in matches if m not in found)
        return found

    def shownPath(self, path):
        """``path`` as the log shows it: relative to the workdir when the glob made it
        absolute."""
        builddir = self.build.getProperty('builddir')
        if builddir and self.workdir:
            base = self.build.path_module.join(builddir, self.workdir)
            sep = self.build.path_module.sep
            if path.startswith(base + sep):
                return path[len(base) + len(sep):]
        return path

    @defer.inlineCallbacks
    def _readReport(self, path, collector, problems):
        shown = self.shownPath(path)
        parser = ReportParser(shown, collector)
        writer = ReportWriter(parser, self.max_size)
        args = {'workdir': self.workdir, 'writer': writer, 'maxsize': self.max_size,
                'blocksize': BLOCK_SIZE, 'keepstamp': False, 'workersrc': path}
        cmd = remotecommand.RemoteCommand('uploadFile', args)
        cmd.useLog(self.reports_log, False)
        yield self.runCommand(cmd)
        problem = None
        # the worker stops at max_size and says so with a failure
        cut = writer.cut or (writer.remaining <= 0 and cmd.didFail())
        if cmd.didFail() and not cut and parser.bytes == 0:
            problem = "cannot be read on the worker (no such file?)"
        elif cut:
            problem = (f"is larger than max_size ({self.max_size} bytes): only the tests "
                       "before that point are read")
        else:
            try:
                parser.close()
            except ReportError as e:
                problem = str(e)
        if problem is None and cmd.didFail():
            problem = "was not sent whole by the worker"
        line = f"{shown}: {parser.cases} test cases"
        if parser.bad_cases:
            line += (f"; {parser.bad_cases} <testcase> elements left out "
                     f"(the first: {parser.first_bad_case})")
        yield self.reports_log.addStdout(line + "\n")
        if problem is not None:
            problems.append(path)
            kept = f" ({parser.cases} test cases before it are kept)" if parser.cases else ""
            yield self.reports_log.addStderr(f"{shown}: {problem}{kept}\n")

    @defer.inlineCallbacks
    def _submit(self, cases):
        """Hand ``cases`` to Buildbot's test result API, a slice per reactor turn; returns
        ``[passed, failed, skipped, flaky]``."""
        counts = [0, 0, 0, 0]
        if not cases:
            return counts
        reactor = self.master.reactor
        pass_fail = yield self.addTestResultSet('JUnit reports', 'pass_fail', 'boolean')
        skip_set = rerun_set = None
        for number, case in enumerate(cases):
            if number and number % SUBMIT_SLICE == 0:
                # Buildbot's submitter sends a batch of 3,000 to the database meanwhile
                yield task.deferLater(reactor, 0, lambda: None)
            counts[case.outcome] += 1
            kwargs = {'test_name': case.name}
            if case.code_path:
                kwargs['test_code_path'] = case.code_path
            if case.line is not None:
                kwargs['line'] = case.line
            if case.duration is not None:
                kwargs['duration_ns'] = int(round(case.duration * 1e9))
            if case.outcome == SKIPPED:
                if skip_set is None:
                    skip_set = yield self.addTestResultSet('JUnit reports: skipped',
                                                           SKIP_CATEGORY, 'boolean')
                self.addTestResult(skip_set, '1', **kwargs)
                continue
            self.addTestResult(pass_fail, '1' if case.outcome in (PASSED, FLAKY) else '0',
                               **kwargs)
            if case.outcome == FLAKY:
                if rerun_set is None:
                    rerun_set = yield self.addTestResultSet(
                        'JUnit reports: failed attempts of tests that passed on a rerun',
                        RERUN_CATEGORY, 'boolean')
                for _ in range(case.failed_attempts):
                    self.addTestResult(rerun_set, '0', test_name=case.name)
        return counts
