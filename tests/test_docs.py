"""Every public name of the master.cfg namespace is documented in docs/."""

from __future__ import annotations

import os
import re

from twisted.trial import unittest

from buildbot_stats import stats

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs')


class PublicNamesDocumented(unittest.TestCase):
    def test_every_public_name_has_a_reference_entry(self):
        text = ''
        for name in os.listdir(DOCS):
            if name.endswith(('.rst', '.inc')):
                with open(os.path.join(DOCS, name), encoding='utf-8') as f:
                    text += f.read()
        documented = set(re.findall(r'\.\. py:(?:class|function):: (\w+)', text))
        missing = sorted(set(stats.__all__) - documented)
        self.assertEqual(missing, [], f"public names without a docs entry: {missing}")


class DocsBuild(unittest.TestCase):
    def test_sphinx_builds_with_warnings_as_errors(self):
        # the docs are part of every feature: a broken reference, a bad table or a page
        # missing from the toctree fails here, not on a reader's screen
        from sphinx.cmd.build import build_main

        out = self.mktemp()
        warnings = os.path.join(os.path.dirname(out), 'sphinx-warnings.txt')
        os.makedirs(os.path.dirname(out), exist_ok=True)
        status = build_main(['-W', '-q', '-b', 'html', '-w', warnings, '-d',
                             out + '.doctrees', DOCS, out])
        with open(warnings, encoding='utf-8') as f:
            self.assertEqual((status, f.read()), (0, ''))
        self.assertTrue(os.path.exists(os.path.join(out, 'index.html')))
