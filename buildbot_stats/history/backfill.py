"""Backfill: the statistics of a master's past builds, rebuilt from its own database.

:func:`openMaster` loads ``master.cfg`` the way ``buildbot checkconfig`` does, finds the
:class:`~buildbot_stats.service.StatsService` in ``c['services']`` and opens the master's
database (``c['db']``) through Buildbot's own ``DBConnector``, read-only: no migration, and
every statement that would write is refused. :func:`backfill` replays the builds through
the service's captures into its backends (see :mod:`buildbot_stats.history.replay`).
"""

from __future__ import annotations

import collections
import os
import sqlite3
import time
import urllib.parse
import warnings

import sqlalchemy as sa
from twisted.internet import defer
from twisted.internet import threads

from buildbot.config.errors import ConfigErrors
from buildbot.config.master import FileLoader
from buildbot.data.connector import DataConnector
from buildbot.db.connector import DBConnector
from buildbot.db.exceptions import DatabaseNotReadyError
from buildbot.process.cache import CacheManager
from buildbot.secrets.manager import SecretManager
from buildbot.util import service
from buildbot.util import stripUrlPassword
from buildbot.warnings import ConfigWarning

from buildbot_stats.history.reader import BuildReader
from buildbot_stats.history.replay import Replayer
from buildbot_stats.registry import statsServices
from buildbot_stats.storage.sqlite.schema import isLocked


#: Seconds one read of a master's SQLite database waits for a lock before Buildbot retries.
SQLITE_LOCK_WAIT = 1.0


def isLockedNow(path, wait=0.5):
    """True when the SQLite file ``path`` cannot be read for a lock another program holds
    (``wait`` seconds at most). Blocks: call it in a thread."""
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=wait)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as e:
        return isLocked(e)
    return False


class BackfillError(Exception):
    """Bad input (no master.cfg, no StatsService, unreachable database...): one line."""


WRITES = ('insert', 'update', 'delete', 'replace', 'create', 'drop', 'alter', 'truncate')


def refuseWrites(conn, cursor, statement, parameters, context, executemany):
    """A SQLAlchemy ``before_cursor_execute`` hook: Buildbot's database is only read."""
    if statement.lstrip().split(None, 1)[0].lower() in WRITES:
        raise BackfillError(f"refusing to write to Buildbot's database: {statement[:60]!r}")


class _NullConsumer:
    def stopConsuming(self):
        pass


class _NullMQ:
    """The backfill has no message queue: the service's subscriptions go nowhere."""

    def startConsuming(self, callback, filter, persistent_name=None):
        return defer.succeed(_NullConsumer())

    def produce(self, routingKey, data):
        pass


class ReplayMaster(service.MasterService):
    """The least of a master the StatsService and its backends need outside Buildbot:
    basedir, config, reactor, the database (read-only), the data API, secrets."""

    def __init__(self, basedir, config, reactor, notices=None):
        super().__init__()
        self.notices = notices
        self.setName('buildbot_stats-backfill')
        self.basedir = basedir
        self.config = config
        self.reactor = reactor
        self.masterid = None
        self.mq = _NullMQ()
        self.caches = CacheManager()
        self.db = DBConnector(basedir)
        self.data = DataConnector()
        self.secrets_manager = SecretManager()

    @defer.inlineCallbacks
    def setup(self):
        yield self.secrets_manager.setServiceParent(self)
        yield self.secrets_manager.setup()
        yield self.data.setServiceParent(self)
        yield self.db.set_master(self)
        db_config = yield self.get_db_config(self.config)
        self.db.configured_db_config = db_config
        url = db_config.db_url
        shown = stripUrlPassword(url)
        try:
            parsed = sa.engine.make_url(url)
        except Exception as e:
            raise BackfillError(f"bad c['db'] URL {shown!r}: {e}") from None
        if parsed.drivername.startswith('sqlite'):
            if not parsed.database or parsed.database == ':memory:':
                raise BackfillError(f"the master's database {shown!r} is in memory: it keeps "
                                    "no history")
            path = parsed.database.replace('%(basedir)s', self.basedir)
            path = os.path.join(self.basedir, path)
            if not os.path.exists(path):
                raise BackfillError(f"the master's database {path} does not exist")
            # a lock held by another program: each try gives up after a second (not
            # SQLite's 5), so that Buildbot's retries, and the command's notice that it
            # waits, come at once
            connect_args = dict(db_config.engine_kwargs.get('connect_args') or {})
            connect_args.setdefault('timeout', SQLITE_LOCK_WAIT)
            db_config.engine_kwargs = dict(db_config.engine_kwargs, connect_args=connect_args)
            shown = path
            if self.notices is not None:
                self.notices.database = shown
                locked = yield threads.deferToThreadPool(
                    self.reactor, self.reactor.getThreadPool(), isLockedNow, path)
                if locked:
                    self.notices.waiting("locked by another program")
        elif self.notices is not None:
            self.notices.database = shown
        try:
            yield self.db.setup(check_version=True, verbose=False)
        except DatabaseNotReadyError:
            raise BackfillError(
                (yield self.describeSchemaMismatch(shown))) from None
        except Exception as e:
            raise BackfillError(f"cannot reach the master's database {shown!r}: "
                                f"{oneLine(e)}") from None
        sa.event.listen(self.db._engine, 'before_cursor_execute', refuseWrites)

    @defer.inlineCallbacks
    def describeSchemaMismatch(self, shown):
        """Why the database is not at this Buildbot's schema version, and what to do: an
        older one is upgraded by ``buildbot upgrade-master``; a newer one (the master runs
        a newer Buildbot) needs that Buildbot where ``buildbot-stats`` runs."""
        import alembic.runtime.migration
        import buildbot

        model = self.db.model

        def revision(conn):
            if not model.table_exists(conn, 'alembic_version'):
                return None, False
            rev = alembic.runtime.migration.MigrationContext.configure(
                conn).get_current_revision()
            try:
                known = model.alembic_get_scripts().get_revision(rev) is not None
            except Exception:  # alembic: an unknown revision id
                known = False
            return rev, known

        try:
            rev, known = yield self.db.pool.do(revision)
        except Exception:
            rev, known = None, True
        if rev is not None and not known:
            return (f"the master's database {shown!r} is at a newer schema version "
                    f"({rev}) than this Buildbot {buildbot.version} knows: the master runs "
                    "a newer Buildbot; install that version where buildbot-stats runs "
                    "(backfill never changes the database)")
        return (f"the master's database {shown!r} is at an older schema version than this "
                f"Buildbot {buildbot.version}: run 'buildbot upgrade-master' first, as for "
                "starting the master (backfill never upgrades it)")

    @defer.inlineCallbacks
    def close(self):
        if self.db.pool is not None:
            yield self.db.pool.stop()


def oneLine(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(': ')


def oneLineError(message):
    """A config error on one line: a traceback in it becomes its first and last lines."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ''
    return f"{lines[0]} {lines[-1]}"


def loadMasterConfig(basedir):
    """The master's :class:`MasterConfig`, loaded as ``buildbot checkconfig`` does."""
    if not os.path.isdir(basedir):
        raise BackfillError(f"{basedir} is not a directory")
    config_file = 'master.cfg'
    if os.path.exists(os.path.join(basedir, 'buildbot.tac')):
        from buildbot.scripts.base import getConfigFileFromTac

        try:
            config_file = getConfigFileFromTac(basedir, quiet=True)
        except Exception as e:
            raise BackfillError(f"cannot read {basedir}/buildbot.tac: {oneLine(e)}") from None
    path = os.path.join(basedir, config_file)
    if not os.path.exists(path):
        raise BackfillError(f"no {config_file} in {basedir}: is it a master's directory?")
    try:
        with warnings.catch_warnings():
            # what checkconfig warns about (a long title...) is not the backfill's business
            warnings.simplefilter('ignore', ConfigWarning)
            return FileLoader(basedir, config_file).loadConfig()
    except ConfigErrors as e:
        raise BackfillError(f"{path} does not load: "
                            f"{'; '.join(oneLineError(m) for m in e.errors)}") from None


def findStatsService(config):
    found = [svc for _, svc in statsServices(config)]
    if not found:
        raise BackfillError("master.cfg has no StatsService in c['services']: nothing to "
                            "backfill into")
    if len(found) > 1:
        names = ', '.join(repr(s.name) for s in found)
        raise BackfillError(f"master.cfg has several StatsServices ({names}); backfill "
                            "handles one")
    return found[0]


def loadMaster(basedir):
    """``(config, service)``: the master's configuration, loaded as ``buildbot
    checkconfig`` does, and its StatsService. No reactor needed: a command checks this
    before it starts one."""
    config = loadMasterConfig(os.path.abspath(basedir))
    return config, findStatsService(config)


@defer.inlineCallbacks
def openMaster(basedir, reactor, notices=None, loaded=None):
    """``(master, service)``: the master's database opened, the service configured (its
    backends not started). ``notices`` (optional) is told the database's file or URL,
    without its password (its ``database`` attribute), and, with ``waiting(why)``, that
    the database makes the backfill wait (an SQLite file locked by another program).
    ``loaded``: what :func:`loadMaster` returned (else it is called)."""
    basedir = os.path.abspath(basedir)
    config, svc = loaded if loaded is not None else loadMaster(basedir)
    master = ReplayMaster(basedir, config, reactor, notices=notices)
    try:
        yield master.setup()
        yield svc.setServiceParent(master)
        # what starting it would do, minus the start (no catch-up, no backend started)
        yield svc.reconfigServiceWithSibling(svc)
    except BaseException:
        yield master.close()
        raise
    return master, svc


class DryRunSink:
    """Stands in for every backend in ``--dry-run``: counts points per series."""

    def __init__(self):
        self.series = collections.Counter()
        self.by_backend = collections.Counter()

    def install(self, backend):
        def post(post_data, series_name, context=None, timestamp=None):
            self.series[series_name] += 1
            self.by_backend[backend.name] += 1
        backend.postStatsValue = post


@defer.inlineCallbacks
def backfill(master, svc, since=None, until=None, builders=None, dry_run=False,
             progress_factory=None):
    """Replay the builds; returns ``(ReplayResult, seconds, DryRunSink or None)``.

    :param builders: builder names (BackfillError for an unknown one)
    :param progress_factory: ``progress_factory(total)`` returns a callable taking the
        number of builds done (and having ``close()``), e.g. a tqdm bar
    """
    reader = BuildReader(master.db, since=since, until=until)
    if builders:
        names = yield reader.builderNames()
        ids = {name: bid for bid, name in names.items()}
        unknown = [b for b in builders if b not in ids]
        if unknown:
            known = ', '.join(sorted(ids)) or 'none'
            raise BackfillError(f"unknown builder {unknown[0]!r} (this master has: {known})")
        reader.builderids = sorted(ids[b] for b in builders)
    total = yield reader.count()
    sink = None
    if dry_run:
        sink = DryRunSink()
        for b in svc.backends:
            sink.install(b)
    else:
        for b in svc.backends:
            yield b.startService()
    progress = progress_factory(total) if progress_factory is not None else None
    started = time.monotonic()
    try:
        replayer = Replayer(svc, reader, master.reactor, progress=progress,
                            wait_for_backends=not dry_run)
        result = yield replayer.run()
        if not dry_run and svc.regressions is not None:
            # the history replayed is analysed as a master analyses its own at start
            result.changes = yield svc.regressions.analyseNow()
    finally:
        if not dry_run:
            for b in svc.backends:
                if b.running:
                    yield b.stopService()
        if progress is not None:
            progress.close()
    if not dry_run:
        # counted again after the stop: it writes what was still pending
        for b in svc.backends:
            m = b.metrics()
            entry = result.backends.setdefault(b.name, {})
            for k in ('written', 'rejected', 'dropped'):
                entry[k] = m.get(k, 0)
            entry['added'] = m.get('added', 0)
    return result, time.monotonic() - started, sink
