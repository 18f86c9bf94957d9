"""The shipped alert rules (dashboards/prometheus/alerts.yml): valid for Prometheus, each
with its cases in alerts_test.yml passing under ``promtool test rules`` (Debian's
prometheus package), and every metric they use one the backend documents."""

from __future__ import annotations

import os
import re
import subprocess

from twisted.trial import unittest
from twisted.trial.unittest import SkipTest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES_DIR = os.path.join(ROOT, 'dashboards', 'prometheus')
RULES = os.path.join(RULES_DIR, 'alerts.yml')
CASES = os.path.join(RULES_DIR, 'alerts_test.yml')
DOCS = os.path.join(ROOT, 'docs', 'storage-prometheus.rst')
PROMTOOL = os.environ.get('BUILDBOT_STATS_PROMTOOL', '/usr/bin/promtool')


def promtool(*args):
    if not os.path.exists(PROMTOOL):
        raise SkipTest("needs promtool (Debian's prometheus package: "
                       "scripts/install-servers.sh)")
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120,
                          cwd=RULES_DIR)


def alertNames(text):
    return re.findall(r'^\s*- alert: (\w+)', text, re.M)


class AlertRules(unittest.TestCase):

    def test_rules_are_valid(self):
        done = promtool('check', 'rules', RULES)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn('SUCCESS: 4 rules found', done.stdout)

    def test_promtool_test_rules_passes(self):
        done = promtool('test', 'rules', CASES)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn('SUCCESS', done.stdout)

    def test_a_broken_rule_fails_its_case(self):
        # the cases can fail: the slowdown rule with a wrong threshold misses its alert
        import shutil
        import tempfile

        tmp = tempfile.mkdtemp(prefix='bbstats-alerts-')
        self.addCleanup(shutil.rmtree, tmp, True)
        with open(RULES, encoding='utf-8') as f:
            rules = f.read()
        broken = rules.replace('(buildbot_stats_open_slowdowns) > 0',
                               '(buildbot_stats_open_slowdowns) > 1')
        self.assertNotEqual(broken, rules)
        with open(os.path.join(tmp, 'alerts.yml'), 'w', encoding='utf-8') as f:
            f.write(broken)
        shutil.copy(CASES, tmp)
        done = promtool('test', 'rules', os.path.join(tmp, 'alerts_test.yml'))
        self.assertNotEqual(done.returncode, 0)
        self.assertIn('BuildbotSlowdownFound', done.stdout + done.stderr)

    def test_every_rule_has_cases_and_is_documented(self):
        with open(RULES, encoding='utf-8') as f:
            rules = f.read()
        with open(CASES, encoding='utf-8') as f:
            cases = f.read()
        with open(DOCS, encoding='utf-8') as f:
            docs = f.read()
        names = alertNames(rules)
        self.assertEqual(names, ['BuildbotSlowdownFound', 'BuildbotSuccessRateFalling',
                                 'BuildbotQueueTooLong', 'BuildbotNoBuildForADay'])
        for name in names:
            self.assertIn(f"alertname: {name}", cases)
            self.assertIn(name, docs)
        # every metric a rule reads is one the backend exposes (the docs' tables)
        for metric in sorted(set(re.findall(r'\b(buildbot_\w+)', rules))):
            self.assertIn(f"``{metric}", docs, metric)
