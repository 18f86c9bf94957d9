"""Every master.cfg snippet the docs show, pasted into a master.cfg that already has services,
www plugins, auth and secrets providers, loads as ``buildbot checkconfig`` loads it and keeps
what was there.

Which blocks are snippets, so that a new one is picked up without touching this test:

- every ``.. code-block:: python`` of README.rst and docs/ is a master.cfg snippet, unless
  it carries ``:class: not-master-cfg`` (a trial test, a script);
- a block of another kind (``::``, another language) that looks like master.cfg code
  (``c[...]``, ``c.setdefault(``, ``stats.Capture...(``) is a mistake: it would escape this
  test (:meth:`Snippets.test_every_master_cfg_block_is_a_python_code_block`);
- the ``::`` blocks of the package's module docstrings that look like master.cfg code are
  snippets too.

Most are loaded in-process with Buildbot's ``FileLoader`` (what ``buildbot checkconfig``
calls); the README's, what a new user pastes first, also through the real command.
"""

from __future__ import annotations

import ast
import glob
import os
import re
import sys
import textwrap
import warnings
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet import utils
from twisted.trial import unittest

from buildbot.config.errors import ConfigErrors
from buildbot.config.master import FileLoader
from buildbot.warnings import ConfigWarning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ['README.rst'] + sorted(os.path.relpath(p, ROOT)
                               for p in glob.glob(os.path.join(ROOT, 'docs', '*.rst')))
PACKAGE = os.path.join(ROOT, 'buildbot_stats')
NOT_MASTER_CFG = 'not-master-cfg'
LOOKS_LIKE_MASTER_CFG = re.compile(
    r"""\bc\[['"]|\bc\.setdefault\(|\bstats\.(Capture|StatsService|\w+StorageService|"""
    r"""statsDashboard)\w*\(""")

# What a working master.cfg already has before buildbot_stats: a reporter in c['services'],
# web UI plugins and a wsgi dashboard, auth and authz, a secrets provider, two builders.
BASE_MASTER_CFG = '''\
import os

from buildbot.plugins import reporters, schedulers, secrets, steps, util, worker

c = BuildmasterConfig = {}
c['buildbotNetUsageData'] = None
c['title'] = 'Base'
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {'pb': {'port': 'tcp:0:interface=127.0.0.1'}}
factory = util.BuildFactory([steps.ShellCommand(command=['true'])])
c['builders'] = [util.BuilderConfig(name=name, workernames=['w1'], factory=factory)
                 for name in ('linux', 'windows')]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['linux', 'windows'])]
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['services'] = [reporters.HttpStatusPush(serverUrl='http://ci.example.org/hook',
                                          name='status-push')]
c['secretsProviders'] = [secrets.SecretInAFile(dirname=os.path.join(basedir, 'vault'))]
c['www'] = {
    'port': 8010,
    'plugins': {'waterfall_view': {}, 'console_view': {}, 'grid_view': {},
                'wsgi_dashboards': [{'name': 'team', 'caption': 'Team', 'app': None,
                                     'order': 9, 'icon': 'FaUsers'}]},
    'auth': util.UserPasswordAuth({'admin': 'admin-pw'}),
    'authz': util.Authz(allowRules=[util.AnyControlEndpointMatcher(role='admins')],
                        roleMatchers=[util.RolesFromUsername(roles=['admins'],
                                                             usernames=['admin'])]),
}
'''


@dataclass(frozen=True)
class Block:
    path: str
    line: int  # of the directive or of the paragraph ending in ``::``
    language: str  # 'python', 'yaml'... or '::' for a literal block
    classes: tuple
    text: str

    def where(self):
        return f"{self.path}:{self.line}"


def rstBlocks(text, path, first_line=1):
    """The literal and code blocks of reStructuredText ``text``, nested ones included (a
    block inside ``.. py:class::``): a directive or a ``::`` line, its options, then the
    lines indented more than it."""
    lines = text.split('\n')
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = re.match(r'^(\s*)\.\. (?:code-block|code|sourcecode)::\s*(\S*)', line)
        literal = (line.rstrip().endswith('::') and not line.lstrip().startswith('..')
                   and line.strip() != '')
        if not (directive or literal):
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        j = i + 1
        classes = ()
        if directive:
            while j < len(lines) and re.match(r'^\s+:\w[\w-]*:', lines[j]):
                m = re.match(r'^\s+:class:\s*(.*)$', lines[j])
                if m:
                    classes += tuple(m.group(1).split())
                j += 1
        body = []
        while j < len(lines) and (not lines[j].strip()
                                  or len(lines[j]) - len(lines[j].lstrip()) > indent):
            body.append(lines[j])
            j += 1
        out.append(Block(path, first_line + i, directive.group(2) if directive else '::',
                         classes, textwrap.dedent('\n'.join(body)).strip('\n') + '\n'))
        i = i + 1 if directive else j  # a directive's body may hold nested blocks
    return out


def docBlocks():
    blocks = []
    for path in DOCS:
        with open(os.path.join(ROOT, path), encoding='utf-8') as f:
            blocks.extend(rstBlocks(f.read(), path))
    return blocks


def docstringBlocks():
    """The ``::`` blocks of the package's module docstrings."""
    blocks = []
    for path in sorted(glob.glob(os.path.join(PACKAGE, '**', '*.py'), recursive=True)):
        with open(path, encoding='utf-8') as f:
            module = ast.parse(f.read())
        # not cleaned: a cleaned docstring loses the indentation its literal blocks have
        doc = ast.get_docstring(module, clean=False)
        if doc:
            line = module.body[0].lineno
            blocks.extend(rstBlocks(doc, os.path.relpath(path, ROOT), line))
    return blocks


def snippets():
    """Every master.cfg snippet: the python code blocks of the docs that are not marked
    otherwise, and the docstrings' blocks of master.cfg code."""
    found = [b for b in docBlocks() if b.language == 'python'
             and NOT_MASTER_CFG not in b.classes]
    found += [b for b in docstringBlocks() if LOOKS_LIKE_MASTER_CFG.search(b.text)]
    return found


def loadMasterCfg(basedir, snippet):
    """The loaded :class:`MasterConfig` of the base master.cfg with ``snippet`` appended;
    raises ConfigErrors as ``buildbot checkconfig`` reports them."""
    os.makedirs(os.path.join(basedir, 'vault'), exist_ok=True)
    os.makedirs(os.path.join(basedir, 'secrets'), exist_ok=True)  # as the docs say
    with open(os.path.join(basedir, 'master.cfg'), 'w', encoding='utf-8') as f:
        f.write(BASE_MASTER_CFG + '\n# --- the snippet\n' + snippet)
    with warnings.catch_warnings():
        warnings.simplefilter('error', ConfigWarning)  # what checkconfig warns about too
        return FileLoader(basedir, 'master.cfg').loadConfig()


def lostFromTheBase(config, basedir):
    """What the base master.cfg had that ``config`` no longer has (empty: all kept)."""
    lost = []
    if 'status-push' not in config.services:
        lost.append("the reporter in c['services']")
    plugins = config.www.get('plugins', {})
    for name in ('waterfall_view', 'console_view', 'grid_view'):
        if name not in plugins:
            lost.append(f"the www plugin {name}")
    if not any(isinstance(d, dict) and d.get('name') == 'team'
               for d in plugins.get('wsgi_dashboards', [])):
        lost.append("the wsgi dashboard 'team'")
    if type(config.www.get('auth')).__name__ != 'UserPasswordAuth':
        lost.append("c['www']['auth']")
    rules = getattr(config.www.get('authz'), 'allowRules', [])
    if [type(r).__name__ for r in rules] != ['AnyControlEndpointMatcher']:
        lost.append("c['www']['authz']")
    if config.www.get('port') != 8010:
        lost.append("c['www']['port']")
    providers = [getattr(p, '_dirname', None) for p in config.secretsProviders]
    if os.path.join(basedir, 'vault') not in providers:
        lost.append("the secrets provider already there")
    if sorted(b.name for b in config.builders) != ['linux', 'windows']:
        lost.append("the builders")
    return lost


def missingFromTheSnippet(config, snippet):
    """What ``snippet`` adds that ``config`` does not have."""
    from buildbot_stats.service import StatsService

    missing = []
    if 'StatsService(' in snippet and not any(isinstance(s, StatsService)
                                              for s in config.services.values()):
        missing.append("its StatsService")
    if 'statsDashboard(' in snippet and not any(
            isinstance(d, dict) and d.get('name') == 'stats'
            for d in config.www.get('plugins', {}).get('wsgi_dashboards', [])):
        missing.append("the Statistics page")
    if "['metrics']" in snippet and 'metrics' not in config.www.get('plugins', {}):
        missing.append("the metrics plugin")
    if 'SecretInAFile(' in snippet and len(config.secretsProviders) < 2:
        missing.append("its secrets provider")
    return missing


class Snippets(unittest.TestCase):
    def test_every_master_cfg_block_is_a_python_code_block(self):
        # a block of master.cfg code this test would not see: make it a python code-block
        strays = [b.where() for b in docBlocks()
                  if b.language != 'python' and LOOKS_LIKE_MASTER_CFG.search(b.text)]
        self.assertEqual(strays, [])
        found = snippets()
        self.assertGreaterEqual(len(found), 20, [b.where() for b in found])
        # the pages of the report are among them
        where = {b.path for b in found}
        for path in ('README.rst', 'docs/quickstart.rst', 'docs/storage-prometheus.rst',
                     'docs/storage-memory.rst', 'docs/storage-influxdb.rst', 'docs/www.rst',
                     'buildbot_stats/stats.py', 'buildbot_stats/www/__init__.py'):
            self.assertTrue(path in where or path == 'docs/storage-memory.rst', path)
        # what is marked otherwise is Python of another file, not master.cfg
        marked = [b for b in docBlocks() if NOT_MASTER_CFG in b.classes]
        self.assertEqual(sorted(b.path for b in marked),
                         ['docs/storage-influxdb.rst', 'docs/storage-memory.rst'])

    def test_each_snippet_keeps_a_working_master_cfg(self):
        tried = []
        for block in snippets():
            basedir = os.path.abspath(self.mktemp())
            try:
                config = loadMasterCfg(basedir, block.text)
            except ConfigErrors as e:
                self.fail(f"{block.where()}: checkconfig fails: {'; '.join(e.errors)}")
            except Warning as w:
                self.fail(f"{block.where()}: checkconfig warns: {w}")
            self.assertEqual(lostFromTheBase(config, basedir), [],
                             f"{block.where()} drops what a master.cfg had")
            self.assertEqual(missingFromTheSnippet(config, block.text), [], block.where())
            tried.append(block.where())
        self.assertGreaterEqual(len(tried), 20)

    def test_the_check_tells_a_snippet_that_replaces(self):
        # the examples as they were: each breaks the master.cfg it is pasted into
        cases = {
            "from buildbot_stats import stats\n"
            "c['services'] = [stats.StatsService()]\n": ["the reporter in c['services']"],
            "c['www'] = {'port': 8010, 'plugins': {'metrics': {}}}\n": [
                "the www plugin waterfall_view", "the www plugin console_view",
                "the www plugin grid_view", "the wsgi dashboard 'team'", "c['www']['auth']",
                "c['www']['authz']"],
            "from buildbot_stats import stats\n"
            "c['www']['plugins']['wsgi_dashboards'] = [stats.statsDashboard()]\n": [
                "the wsgi dashboard 'team'"],
            "import os\nfrom buildbot.plugins import secrets\n"
            "c['secretsProviders'] = [secrets.SecretInAFile("
            "dirname=os.path.join(basedir, 'secrets'))]\n": [
                "the secrets provider already there"],
        }
        for snippet, lost in cases.items():
            basedir = os.path.abspath(self.mktemp())
            self.assertEqual(lostFromTheBase(loadMasterCfg(basedir, snippet), basedir), lost,
                             snippet)

    def test_a_service_not_in_a_list_fails_checkconfig(self):
        # it passed, and the service silently did not run (docs/quickstart.rst,
        # Troubleshooting)
        with self.assertRaises(ConfigErrors) as caught:
            loadMasterCfg(os.path.abspath(self.mktemp()),
                          "from buildbot_stats import stats\n"
                          "c['services'] = stats.StatsService()\n")
        self.assertEqual(caught.exception.errors, [
            "c['services'] must be a list of services, got a StatsService: write "
            "c.setdefault('services', []).append(stats.StatsService(...))"])


class SnippetsThroughCheckconfig(unittest.TestCase):
    """The README's snippets, what a new user pastes first, through the real command."""

    timeout = 120

    @defer.inlineCallbacks
    def test_the_readmes_snippets(self):
        readme = [b for b in snippets() if b.path == 'README.rst']
        self.assertGreaterEqual(len(readme), 3)
        basedir = os.path.abspath(self.mktemp())
        loadMasterCfg(basedir, ''.join(b.text for b in readme))  # all of them at once
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ['-c', 'from buildbot.scripts.runner import run; run()',
                             'checkconfig', basedir], env=dict(os.environ))
        output = (out + err).decode()
        self.assertEqual(code, 0, output)
        self.assertIn('Config file is good!', output)
        self.assertNotIn('Warning', output)
