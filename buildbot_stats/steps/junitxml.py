"""Reading JUnit/xUnit XML reports as they arrive, a block at a time, safely.

The formats: pytest ``--junitxml`` (xunit1 and xunit2), Maven Surefire and Failsafe
(``<flakyFailure>``, ``<flakyError>``, ``<rerunFailure>``, ``<rerunError>``),
go-junit-report, jest-junit, ctest ``--output-junit``, and anything else with
``<testsuites>``/``<testsuite>`` and ``<testcase>`` elements.

Why this shape:

* **Streaming.** The step hands every block the worker sends to :meth:`ReportParser.feed`
  (expat, incremental); a ``<testcase>`` is read when its end tag arrives and then let
  go, and the text of ``<system-out>``, ``<failure>``... is never kept. A 50 MB report of
  100,000 cases costs the master a few megabytes and a few milliseconds per block.
* **The meaning of the elements comes from junitparser** (its xunit2 flavour), the
  maintained library of the field: each finished ``<testcase>`` element is wrapped as a
  ``junitparser.xunit2.TestCase``, whose ``result`` and ``interim_result`` say failed,
  errored, skipped, flaky or rerun. (xunitparser, the other candidate, maps reports to
  ``unittest`` results, has not changed since 2022 and knows no flaky or rerun elements.)
  junitparser parses whole files into a tree (``JUnitXml.fromfile``); only its element
  classes are used here, on elements this module builds from the stream.
* **Hostile files are harmless.** A report never needs a DTD: a ``<!DOCTYPE`` (the start
  of every external-entity and billion-laughs attack) stops the file with a clear message,
  before any entity is declared; parameter entities and external references are never
  read. Names are kept as text: whatever ends up in a page is escaped there.
"""

from __future__ import annotations

import math
from typing import NamedTuple
from xml.etree import ElementTree
from xml.parsers import expat

from junitparser import Error as JUnitError
from junitparser import Failure as JUnitFailure
from junitparser import Skipped as JUnitSkipped
from junitparser.xunit2 import FlakyError
from junitparser.xunit2 import FlakyFailure
from junitparser.xunit2 import RerunError
from junitparser.xunit2 import RerunFailure
from junitparser.xunit2 import TestCase as JUnitTestCase

from buildbot_stats.outcomes import FAILED
from buildbot_stats.outcomes import FLAKY
from buildbot_stats.outcomes import PASSED
from buildbot_stats.outcomes import SKIPPED

ROOTS = ('testsuites', 'testsuite')
#: the longest test name kept (characters); a longer one is cut, with a note
MAX_NAME = 4096


class ReportError(Exception):
    """A report that cannot be read (further): the message says why, for the step's log."""


class Case(NamedTuple):
    """One test of the reports: its final outcome and what came before. (A tuple of plain
    values: the garbage collector stops tracking it, so that 100,000 of them bring on no
    full collection of the master's heap.)"""

    name: str
    outcome: int  # PASSED, FAILED, SKIPPED, FLAKY (codes of buildbot_stats.outcomes)
    duration: float | None  # seconds
    code_path: str | None = None
    line: int | None = None
    failed_attempts: int = 0  # failures before the final result (reruns)


def testName(classname, name):
    """The name a test is known by: ``classname.name`` (pytest, Surefire, go-junit-report),
    or the name alone when the class name is missing or already in it (jest-junit)."""
    name = name or ''
    if classname and classname != name and not name.startswith(classname + '.'):
        return f"{classname}.{name}" if name else classname
    return name


def seconds(text):
    """The ``time`` attribute as seconds, None when missing or not a finite number >= 0
    (Surefire writes ``1,234.5`` for long tests)."""
    if text is None:
        return None
    try:
        value = float(str(text).replace(',', ''))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def readCase(elem):
    """``(name, outcome, duration, code path, line, failed attempts)`` of a ``<testcase>``
    element, its meaning read by junitparser."""
    case = JUnitTestCase.fromelem(elem)
    name = testName(case.classname, case.name)
    if not name:
        raise ValueError("a <testcase> without name and classname")
    results = case.result
    interim = case.interim_result
    failed_attempts = sum(1 for r in interim if isinstance(
        r, (FlakyFailure, FlakyError, RerunFailure, RerunError)))
    if any(isinstance(r, (JUnitFailure, JUnitError)) for r in results):
        outcome = FAILED
    elif any(isinstance(r, JUnitSkipped) for r in results):
        outcome = SKIPPED
    elif failed_attempts:
        outcome = FLAKY  # passed at last: Surefire's <flakyFailure>
    else:
        outcome = PASSED
    line = elem.get('line')
    try:
        line = int(line) if line is not None else None
    except ValueError:
        line = None
    return name, outcome, seconds(elem.get('time')), elem.get('file'), line, failed_attempts


class Collector:
    """The cases of every report of a step, one per test name: a test reported again (a
    rerun written as a repeated ``<testcase>``: pytest-rerunfailures) keeps its last
    result, and failures before a final pass make it flaky."""

    def __init__(self):
        self.cases = {}
        self.long_names = 0

    def add(self, name, outcome, duration, code_path, line, failed_attempts):
        if len(name) > MAX_NAME:
            name = name[:MAX_NAME]
            self.long_names += 1
        before = self.cases.get(name)
        if before is not None:
            failed_attempts += before.failed_attempts + (
                1 if before.outcome in (FAILED, FLAKY) else 0)
            if outcome == SKIPPED and before.outcome != SKIPPED:
                return  # a skipped repeat says nothing new
            if outcome == PASSED and failed_attempts:
                outcome = FLAKY
        self.cases[name] = Case(name, outcome, duration, code_path, line, failed_attempts)

    def sorted(self):
        return [self.cases[name] for name in sorted(self.cases)]


class ReportParser:
    """One report, fed block by block (:meth:`feed`, then :meth:`close`).

    Every ``<testcase>`` found goes to ``collector`` as it ends. Problems raise
    :class:`ReportError`, whose message names the line; the cases read before it are kept.

    :param name: the report's path, for messages
    :param collector: a :class:`Collector`
    """

    def __init__(self, name, collector):
        self.name = name
        self.collector = collector
        self.cases = 0
        self.bytes = 0
        self.bad_cases = 0
        self.first_bad_case = None
        self.root = None
        self._stack = None  # the open elements of the <testcase> being read
        self._failed = None
        parser = expat.ParserCreate()
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._refuseDoctype
        parser.EntityDeclHandler = self._refuseEntity
        parser.ExternalEntityRefHandler = self._refuseEntity
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        self._parser = parser

    # -- expat's handlers -------------------------------------------------------------------

    def _refuseDoctype(self, *args):
        raise ReportError("has a <!DOCTYPE>: a test report needs none, and this one is not "
                          "read (entities in reports are refused, so that none can read a "
                          "file or exhaust the master's memory)")

    def _refuseEntity(self, *args):
        raise ReportError("declares or references an external entity: refused")

    def _start(self, tag, attrs):
        if self.root is None:
            if tag not in ROOTS:
                raise ReportError(f"is not a JUnit report: its root element is <{tag}>, not "
                                  "<testsuites> or <testsuite>")
            self.root = tag
        stack = self._stack
        if stack is not None:
            stack.append(ElementTree.SubElement(stack[-1], tag, attrs))
        elif tag == 'testcase':
            self._stack = [ElementTree.Element(tag, attrs)]

    def _end(self, tag):
        stack = self._stack
        if stack is None:
            return
        elem = stack.pop()
        if stack:
            return
        self._stack = None
        try:
            found = readCase(elem)
        except ValueError as e:
            self.bad_cases += 1
            if self.first_bad_case is None:
                self.first_bad_case = f"line {self._parser.CurrentLineNumber}: {e}"
            return
        self.cases += 1
        self.collector.add(*found)

    # -- feeding ----------------------------------------------------------------------------

    def feed(self, data):
        """Read one more block (bytes)."""
        if self._failed is not None:
            return
        self.bytes += len(data)
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as e:
            self._fail(self._describe(e))
        except ReportError as e:
            self._fail(str(e))

    def close(self):
        """The end of the file: raises :class:`ReportError` for any problem met."""
        if self._failed is None:
            try:
                self._parser.Parse(b'', True)
            except expat.ExpatError as e:
                self._fail(self._describe(e))
            except ReportError as e:
                self._fail(str(e))
        if self._failed is None and self.root is None:
            self._fail("is empty: no XML element in it")
        if self._failed is not None:
            raise ReportError(self._failed)

    def _fail(self, message):
        self._failed = message
        self._stack = None
        # let go of the parser (and whatever it holds)
        self._parser = None

    def _describe(self, e):
        what = expat.ErrorString(e.code) if e.code else str(e)
        if self.bytes == 0 or (self.root is None and what == 'no element found'):
            return "is empty: no XML element in it"
        if what == 'no element found':
            return (f"ends before its last element does (cut short?) at line {e.lineno}, "
                    f"column {e.offset}")
        return f"is not well-formed XML: {what} at line {e.lineno}, column {e.offset}"
