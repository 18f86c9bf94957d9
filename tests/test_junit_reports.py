"""The JUnit/xUnit report reader (buildbot_stats.steps.junitxml): every runner's format,
reruns and flaky results, blocks split anywhere, bad and hostile files."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from twisted.trial import unittest

from buildbot_stats.outcomes import FAILED
from buildbot_stats.outcomes import FLAKY
from buildbot_stats.outcomes import PASSED
from buildbot_stats.outcomes import SKIPPED
from buildbot_stats.steps.junitxml import Collector
from buildbot_stats.steps.junitxml import ReportError
from buildbot_stats.steps.junitxml import ReportParser
from buildbot_stats.steps.junitxml import testName

PYTEST_XUNIT2 = b'''<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest"
 errors="1" failures="1" skipped="1" tests="5" time="0.5" timestamp="2024-05-01T12:00:00"
 hostname="h"><testcase classname="tests.test_a" name="test_ok" time="0.001" />
<testcase classname="tests.test_a" name="test_fail" time="0.002"><failure
 message="assert 1 == 2">def test_fail():
&gt;       assert 1 == 2</failure></testcase>
<testcase classname="tests.test_a" name="test_error" time="0.003"><error
 message="failed on setup">fixture 'x' not found</error></testcase>
<testcase classname="tests.test_a" name="test_skip" time="0.000"><skipped
 type="pytest.skip" message="no db">/x.py:3: no db</skipped></testcase>
<testcase classname="tests.test_a.TestK" name="test_param[1-\xc3\xa9]" time="1.5">
<system-out>captured</system-out></testcase></testsuite></testsuites>'''

# xunit1 (junit_family=xunit1) has file and line; pytest-rerunfailures writes each rerun as
# a repeated testcase
PYTEST_RERUNS = b'''<testsuites><testsuite name="pytest" tests="2">
<testcase classname="t.test_b" name="test_flaky" file="t/test_b.py" line="9" time="0.1">
<failure message="boom">tb</failure></testcase>
<testcase classname="t.test_b" name="test_flaky" file="t/test_b.py" line="9" time="0.2"/>
<testcase classname="t.test_b" name="test_broken" time="0.1"><failure/></testcase>
<testcase classname="t.test_b" name="test_broken" time="0.1"><failure/></testcase>
</testsuite></testsuites>'''

SUREFIRE = b'''<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="3.0"
 name="org.example.AppTest" time="2,345.6" tests="4" errors="0" skipped="1" failures="1">
  <properties><property name="java.version" value="17"/></properties>
  <testcase name="testOk" classname="org.example.AppTest" time="0.01"/>
  <testcase name="testFlaky" classname="org.example.AppTest" time="1,234.5">
    <flakyFailure message="expected 1" type="java.lang.AssertionError">
      <stackTrace>java.lang.AssertionError</stackTrace><system-out>x</system-out>
    </flakyFailure>
    <flakyError message="npe" type="java.lang.NullPointerException"><stackTrace>s</stackTrace>
    </flakyError>
  </testcase>
  <testcase name="testBroken" classname="org.example.AppTest" time="0.2">
    <failure message="expected 2" type="java.lang.AssertionError">trace</failure>
    <rerunFailure message="expected 2" type="java.lang.AssertionError"><stackTrace>t
    </stackTrace></rerunFailure>
  </testcase>
  <testcase name="testIgnored" classname="org.example.AppTest" time="0"><skipped/></testcase>
</testsuite>'''

GO_JUNIT_REPORT = b'''<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" failures="1">
  <testsuite name="example.com/pkg" tests="3" failures="1" errors="0" id="0" time="0.020"
   timestamp="2024-05-01T12:00:00Z">
    <properties><property name="go.version" value="go1.22"></property></properties>
    <testcase name="TestAdd" classname="example.com/pkg" time="0.000"></testcase>
    <testcase name="TestSub" classname="example.com/pkg" time="0.010">
      <failure message="Failed" type="">sub_test.go:12: want 1</failure></testcase>
    <testcase name="TestSkip" classname="example.com/pkg" time="0.000">
      <skipped message="skip"></skipped></testcase>
  </testsuite>
</testsuites>'''

JEST_JUNIT = b'''<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="jest tests" tests="2" failures="1" errors="0" time="1.2">
  <testsuite name="math" errors="0" failures="1" skipped="0" timestamp="2024-05-01T12:00:00"
   time="1.1" tests="2">
    <testcase classname="math adds" name="math adds" time="0.003"></testcase>
    <testcase classname="math divides" name="math divides" time="0.004">
      <failure>Error: expect(received).toBe(expected)</failure></testcase>
  </testsuite>
</testsuites>'''

CTEST = b'''<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="Linux-c++" tests="3" failures="1" disabled="1" skipped="0"
 hostname="" time="0" timestamp="2024-05-01T12:00:00">
  <testcase name="unit" classname="unit" time="0.0131" status="run">
    <system-out>ok</system-out></testcase>
  <testcase name="integration" classname="integration" time="2.5" status="fail">
    <failure message="Failed">oops</failure></testcase>
  <testcase name="slow" classname="slow" time="0" status="disabled"><skipped
   message="Disabled"/></testcase>
</testsuite>'''


def read(data, block=None):
    """``(collector, parser)`` of ``data`` fed in blocks of ``block`` bytes (all at once
    when None); the parser's error, if any, as ``parser.error``."""
    collector = Collector()
    parser = ReportParser('report.xml', collector)
    block = block or max(len(data), 1)
    for i in range(0, len(data), block):
        parser.feed(data[i:i + block])
    parser.error = None
    try:
        parser.close()
    except ReportError as e:
        parser.error = str(e)
    return collector, parser


def outcomes(collector):
    return [(c.name, c.outcome, c.duration, c.failed_attempts) for c in collector.sorted()]


class Formats(unittest.TestCase):

    def test_pytest_xunit2(self):
        collector, parser = read(PYTEST_XUNIT2)
        self.assertIsNone(parser.error)
        self.assertEqual(outcomes(collector), [
            ('tests.test_a.TestK.test_param[1-\u00e9]', PASSED, 1.5, 0),
            ('tests.test_a.test_error', FAILED, 0.003, 0),
            ('tests.test_a.test_fail', FAILED, 0.002, 0),
            ('tests.test_a.test_ok', PASSED, 0.001, 0),
            ('tests.test_a.test_skip', SKIPPED, 0.0, 0),
        ])
        self.assertEqual(parser.cases, 5)

    def test_pytest_rerunfailures_repeated_testcase(self):
        collector, _ = read(PYTEST_RERUNS)
        self.assertEqual(outcomes(collector), [
            ('t.test_b.test_broken', FAILED, 0.1, 1),
            ('t.test_b.test_flaky', FLAKY, 0.2, 1),
        ])
        flaky = collector.cases['t.test_b.test_flaky']
        self.assertEqual((flaky.code_path, flaky.line), ('t/test_b.py', 9))

    def test_surefire_flaky_and_rerun_elements(self):
        collector, parser = read(SUREFIRE)
        self.assertIsNone(parser.error)
        self.assertEqual(outcomes(collector), [
            # failed twice (a failure, then an error) before it passed
            ('org.example.AppTest.testBroken', FAILED, 0.2, 1),
            ('org.example.AppTest.testFlaky', FLAKY, 1234.5, 2),
            ('org.example.AppTest.testIgnored', SKIPPED, 0.0, 0),
            ('org.example.AppTest.testOk', PASSED, 0.01, 0),
        ])

    def test_go_junit_report(self):
        collector, _ = read(GO_JUNIT_REPORT)
        self.assertEqual(outcomes(collector), [
            ('example.com/pkg.TestAdd', PASSED, 0.0, 0),
            ('example.com/pkg.TestSkip', SKIPPED, 0.0, 0),
            ('example.com/pkg.TestSub', FAILED, 0.01, 0),
        ])

    def test_jest_junit_name_not_doubled(self):
        collector, _ = read(JEST_JUNIT)
        self.assertEqual(outcomes(collector), [('math adds', PASSED, 0.003, 0),
                                               ('math divides', FAILED, 0.004, 0)])

    def test_ctest(self):
        collector, _ = read(CTEST)
        self.assertEqual(outcomes(collector), [('integration', FAILED, 2.5, 0),
                                               ('slow', SKIPPED, 0.0, 0),
                                               ('unit', PASSED, 0.0131, 0)])

    def test_names(self):
        self.assertEqual(testName('a.B', 'c'), 'a.B.c')
        self.assertEqual(testName(None, 'c'), 'c')
        self.assertEqual(testName('x y', 'x y'), 'x y')
        self.assertEqual(testName('pkg', 'pkg.already'), 'pkg.already')
        self.assertEqual(testName('only', None), 'only')

    def test_reports_merge_and_a_later_skip_does_not_hide_a_result(self):
        collector = Collector()
        for data in (b'<testsuite><testcase name="a"><failure/></testcase></testsuite>',
                     b'<testsuite><testcase name="a"/><testcase name="b"/></testsuite>',
                     b'<testsuite><testcase name="b"><skipped/></testcase></testsuite>'):
            parser = ReportParser('r', collector)
            parser.feed(data)
            parser.close()
        self.assertEqual(outcomes(collector), [('a', FLAKY, None, 1), ('b', PASSED, None, 0)])

    def test_bad_time_and_line_are_unknown(self):
        collector, _ = read(b'<testsuite><testcase name="a" time="soon" line="x"/>'
                            b'<testcase name="b" time="-1"/><testcase name="c" time="nan"/>'
                            b'</testsuite>')
        self.assertEqual([(c.duration, c.line) for c in collector.sorted()],
                         [(None, None)] * 3)

    def test_testcase_without_a_name_is_counted_and_left_out(self):
        collector, parser = read(b'<testsuite><testcase time="1"/><testcase name="ok"/>'
                                 b'</testsuite>')
        self.assertEqual(list(collector.cases), ['ok'])
        self.assertEqual(parser.bad_cases, 1)
        self.assertIn("line 1: a <testcase> without name and classname",
                      parser.first_bad_case)

    @settings(max_examples=40, deadline=None)
    @given(st.sampled_from([PYTEST_XUNIT2, PYTEST_RERUNS, SUREFIRE, GO_JUNIT_REPORT,
                            JEST_JUNIT, CTEST]),
           st.integers(min_value=1, max_value=97))
    def test_any_split_into_blocks_reads_the_same(self, data, block):
        whole, _ = read(data)
        split, parser = read(data, block)
        self.assertIsNone(parser.error)
        self.assertEqual(outcomes(split), outcomes(whole))


class BadAndHostileReports(unittest.TestCase):

    def assertRefused(self, data, message):
        collector, parser = read(data)
        self.assertIsNotNone(parser.error)
        self.assertIn(message, parser.error)
        return collector

    def test_empty(self):
        self.assertRefused(b'', "is empty")
        self.assertRefused(b'<?xml version="1.0"?>\n', "is empty")

    def test_malformed_keeps_what_came_before(self):
        collector = self.assertRefused(
            b'<testsuite>\n<testcase name="a"/>\n<testcase name="b" <oops/></testsuite>',
            "is not well-formed XML: not well-formed (invalid token) at line 3, column")
        self.assertEqual(list(collector.cases), ['a'])

    def test_cut_short(self):
        self.assertRefused(b'<testsuite><testcase name="a"/>', "ends before its last element")

    def test_not_a_report(self):
        self.assertRefused(b'<html><script>alert(1)</script></html>',
                           "is not a JUnit report: its root element is <html>")

    def test_external_entity_never_read(self):
        secret = os.path.abspath(self.mktemp())
        with open(secret, 'w') as f:
            f.write('TOPSECRET')
        for doc in (f'<!DOCTYPE t [<!ENTITY x SYSTEM "file://{secret}">]>'
                    '<testsuite><testcase name="&x;"/></testsuite>',
                    f'<!DOCTYPE t SYSTEM "file://{secret}"><testsuite/>',
                    f'<!DOCTYPE t [<!ENTITY % p SYSTEM "file://{secret}"> %p;]><testsuite/>'):
            collector = self.assertRefused(doc.encode(), "has a <!DOCTYPE>")
            self.assertEqual(collector.cases, {})

    def test_billion_laughs(self):
        entities = '<!ENTITY a0 "lol">' + ''.join(
            f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
        doc = f'<!DOCTYPE t [{entities}]><testsuite><testcase name="&a9;"/></testsuite>'
        self.assertRefused(doc.encode(), "has a <!DOCTYPE>")

    def test_undeclared_entity(self):
        self.assertRefused(b'<testsuite><testcase name="&x;"/></testsuite>',
                           "undefined entity")

    def test_markup_in_names_is_kept_as_text(self):
        collector, parser = read(
            b'<testsuite><testcase classname="&lt;b&gt;" name="&lt;script&gt;x()&lt;/script'
            b'&gt;&quot;\'"/></testsuite>')
        self.assertIsNone(parser.error)
        self.assertEqual(list(collector.cases), ['<b>.<script>x()</script>"\''])

    def test_huge_report_streamed(self):
        """100,000 cases with captured output (50 MB), fed as the worker sends them."""
        pad = b'x' * 420
        head = b'<testsuites><testsuite name="huge">\n'
        cases = b''.join(
            b'<testcase classname="huge.m%d" name="test_%d" time="0.001">%s<system-out>%s'
            b'</system-out></testcase>\n'
            % (i // 1000, i, b'<failure/>' if i % 1000 == 7 else b'', pad)
            for i in range(100_000))
        data = head + cases + b'</testsuite></testsuites>\n'
        self.assertGreater(len(data), 50_000_000)
        collector, parser = read(data, 32 * 1024)
        self.assertIsNone(parser.error)
        self.assertEqual(parser.cases, 100_000)
        counts = [0, 0, 0, 0]
        for case in collector.cases.values():
            counts[case.outcome] += 1
        self.assertEqual(counts, [99_900, 100, 0, 0])
