"""InfluxStorageService: points to InfluxDB (1.x, 2.x, 3.x) in batches, over Twisted's HTTP.

Where a point goes: ``postStatsValue`` encodes it to one line at once (a bad value is
rejected here, with its build in the log) and hands the line to a
:class:`~buildbot_stats.delivery.writer.BatchWriter`, which buffers, batches, sends with
treq, retries and spools. Nothing here blocks: no thread per point, no synchronous client.
"""

from __future__ import annotations

import base64
import os
import time
import urllib.parse

import treq.client
from twisted.internet import defer
from twisted.internet import ssl
from twisted.internet import task
from twisted.python import log
from twisted.web.client import Agent
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from buildbot import config
from buildbot.interfaces import IRenderable
from buildbot.util.deferwaiter import DeferWaiter

from buildbot_stats.checks import aTypeName
from buildbot_stats.checks import argumentNames
from buildbot_stats.checks import booleanProblem
from buildbot_stats.checks import countProblem
from buildbot_stats.checks import durationProblem
from buildbot_stats.checks import portProblem
from buildbot_stats.checks import report
from buildbot_stats.checks import seconds
from buildbot_stats.checks import shown
from buildbot_stats.checks import unknownArgument
from buildbot_stats.delivery.lineprotocol import LineEncoder
from buildbot_stats.delivery.lineprotocol import PointRejected
from buildbot_stats.delivery.retry import WriteOptions
from buildbot_stats.delivery.sender import HTTPBatchSender
from buildbot_stats.delivery.spool import Spool
from buildbot_stats.delivery.writer import BatchWriter
from buildbot_stats.point import to_epoch_ns
from buildbot_stats.slices import cyclicGCPaused
from buildbot_stats.storage.base import StatsStorageBase
from buildbot_stats.storage.base import describeBuildOf
from buildbot_stats.storage.influxdb.series import CHECK_INTERVAL
from buildbot_stats.storage.influxdb.series import LimitReport
from buildbot_stats.storage.influxdb.series import SeriesWatch
from buildbot_stats.storage.influxdb.series import measurementsOf
from buildbot_stats.storage.influxdb.series import perBuildSeries
from buildbot_stats.storage.influxdb.testlines import testPoints
from buildbot_stats.tagging import TagPolicy

DEFAULT_PORT = 8086
DEFAULT_SPOOL_MAX_BYTES = 100 * 1024 * 1024
#: Seconds of encoding a build's test results does per reactor turn, at most about
TEST_SLICE = 0.005
_NOT_GIVEN = object()



class ClosablePool(HTTPConnectionPool):
    """Twisted's pool, which once closed (at stop, or when a reconfig changes the
    destination) closes the connections that come back from requests still under way
    then (a write given up when the stop's bound ran out) instead of keeping them with a
    240-second timer of the reactor's that outlives the service."""

    closed = False

    def _putConnection(self, key, connection):
        if self.closed:
            connection.transport.loseConnection()
            return
        super()._putConnection(key, connection)

    def closeCachedConnections(self):
        self.closed = True
        return super().closeCachedConnections()

class InfluxStorageService(StatsStorageBase):
    """Stores points in InfluxDB; see docs/storage-influxdb.rst for every option.

    The spec's arguments come first and keep their meaning::

        InfluxStorageService(url, port, user, password, db, captures, name=None, ...)

    ``url`` is a host name (``'influx.example.org'``) or a full URL
    (``'https://influx.example.org:8086/prefix'``). ``user``, ``password`` and ``token`` may
    be Buildbot secrets (``util.Secret``, ``util.Interpolate``); they are rendered when the
    configuration is applied and never logged.
    """

    secrets = ['user', 'password', 'token']

    def checkConfig(self, url=None, port=None, user=None, password=None, db=None,
                    captures=None, *, org=None, bucket=None, token=None,
                    retention_policy=None, ssl=False, ca_file=None, verify_ssl=True,
                    spool_dir=None, spool_max_bytes=DEFAULT_SPOOL_MAX_BYTES, spool_fsync=False,
                    extra_tags=None, create_database=False, max_series=None,
                    series_check_interval=CHECK_INTERVAL, http_client=None, reactor=None,
                    **write_options):
        me = self.describeForConfig()
        port_problem = portProblem('port', port, none_means=f"the URL's, else {DEFAULT_PORT}")
        report(me, countProblem('max_series', max_series,
                                none_means="the limit the database reports"),
               durationProblem('series_check_interval', series_check_interval, zero=True,
                               none_means="no checks"))
        if not isinstance(url, str) or not url.strip():
            config.error(f"{me}: url must be a host name or an http(s) URL, got {shown(url)}")
        elif port_problem is None:
            try:
                _baseUrl(url, port, ssl)
            except ValueError as e:
                config.error(f"{me}: {e}")
        report(me, port_problem)
        for what, value in (('user', user), ('password', password), ('token', token)):
            if value is not None and not isinstance(value, str) \
                    and not IRenderable.providedBy(value):
                # the value itself is not shown: it may be a secret
                config.error(f"{me}: {what} must be a string or a secret (util.Secret, "
                             f"util.Interpolate), got {aTypeName(value)}")
        for what, value in (('db', db), ('org', org), ('bucket', bucket),
                            ('retention_policy', retention_policy)):
            if value is not None and (not isinstance(value, str) or not value):
                config.error(f"{me}: {what} must be a non-empty string, got {shown(value)}")
        if bucket is None:
            if db is None:
                config.error(f"{me}: db is required (or bucket, for the InfluxDB 2.x/3.x "
                             "/api/v2/write API)")
            if org is not None:
                config.error(f"{me}: org is only used with bucket (the /api/v2/write API)")
        if ca_file is not None and not isinstance(ca_file, str):
            config.error(f"{me}: ca_file must be a path to a PEM file, got {shown(ca_file)}")
        report(me, *(booleanProblem(what, value) for what, value in (
            ('ssl', ssl), ('verify_ssl', verify_ssl), ('create_database', create_database),
            ('spool_fsync', spool_fsync))))
        if create_database and bucket is not None:
            config.error(f"{me}: create_database works with db (InfluxDB 1.x), not with a "
                         "bucket")
        if spool_dir is not None and (not isinstance(spool_dir, str) or not spool_dir):
            config.error(f"{me}: spool_dir must be a directory path, got {shown(spool_dir)}")
        report(me, countProblem('spool_max_bytes', spool_max_bytes))
        scalar = (str, int, float, bool, type(None))
        if extra_tags is not None and not (
                isinstance(extra_tags, dict)
                and all(isinstance(x, scalar) for item in extra_tags.items() for x in item)):
            # an object's repr may hold anything: its type only
            config.error(f"{me}: extra_tags must be a dict of tag names to strings, got "
                         f"{shown(extra_tags)}")
        elif extra_tags is not None:
            # validated once, here: an unwritable one would be left out of every point
            try:
                _, dropped = LineEncoder().encode('extra_tags', {'v': 1}, extra_tags, None)
            except PointRejected as e:
                config.error(f"{me}: extra_tags {extra_tags!r}: {e}")
            else:
                for what, why in dropped:
                    config.error(f"{me}: extra_tags: extra {what} cannot be written ({why})")
        unknown = [k for k in write_options if k not in WriteOptions.names()]
        for keyword in unknown:
            config.error(unknownArgument(me, keyword, argumentNames(self.checkConfig)
                                         + list(WriteOptions.names()) + ['name']))
        if not unknown:
            for problem in WriteOptions(**write_options).problems():
                config.error(f"{me}: {problem}")

    @defer.inlineCallbacks
    def reconfigService(self, url=None, port=None, user=None, password=None, db=None,
                        captures=None, *, org=None, bucket=None, token=None,
                        retention_policy=None, ssl=False, ca_file=None, verify_ssl=True,
                        spool_dir=None, spool_max_bytes=DEFAULT_SPOOL_MAX_BYTES,
                        spool_fsync=False, extra_tags=None, create_database=False,
                        max_series=None, series_check_interval=CHECK_INTERVAL,
                        http_client=None, reactor=None, **write_options):
        # positional secrets are not rendered by BuildbotService (it renders kwargs only)
        user, password, token = yield self.renderSecrets(user, password, token)
        self.max_series = max_series
        self.series_check_interval = seconds(series_check_interval) or 0
        self.org = org
        self._injected_reactor = reactor
        self.options = WriteOptions(**write_options)
        self.encoder = LineEncoder()
        # this backend's own extra tags (the StatsService's are added by the captures)
        self.tag_policy = TagPolicy(extra_tags, max_tag_values=None)
        self.db = db
        self.bucket = bucket
        self.base_url = _baseUrl(url, port, ssl)
        self.spool_dir = spool_dir
        self.spool_max_bytes = spool_max_bytes
        self.spool_fsync = spool_fsync
        self.create_database = create_database
        if bucket is not None:
            params = {'bucket': bucket, 'precision': 'ns'}
            if org is not None:
                params['org'] = org
            self.write_url = f"{self.base_url}/api/v2/write?{urllib.parse.urlencode(params)}"
            self.destination = f"{self.base_url} bucket {bucket}"
        else:
            params = {'db': db, 'precision': 'ns'}
            if retention_policy is not None:
                params['rp'] = retention_policy
            self.write_url = f"{self.base_url}/write?{urllib.parse.urlencode(params)}"
            self.destination = f"{self.base_url} db {db}"
        # what the Statistics page needs to read back (InfluxQL, /query): 1.x databases only
        self._reader_settings = None if bucket is not None else {
            'url': self.base_url, 'db': db, 'user': user, 'password': password,
            'retention_policy': retention_policy, 'ca_file': ca_file, 'verify_ssl': verify_ssl}
        self._headers = {b'Content-Type': [b'text/plain; charset=utf-8']}
        if token:
            self._headers[b'Authorization'] = [b'Token ' + token.encode('utf-8')]
        elif user or password:
            basic = base64.b64encode(f"{user or ''}:{password or ''}".encode('utf-8'))
            self._headers[b'Authorization'] = [b'Basic ' + basic]
        if self.series_watch is not None:
            # its check under way goes with the old connections
            yield self.series_watch.stop()
        if self._pool is not None:
            # a new destination or TLS setting: new connections
            yield self._pool.closeCachedConnections()
        self._pool = None
        self._http = http_client if http_client is not None else self._makeClient(
            ca_file, verify_ssl)
        if self._writer is not None:
            self._writer.retarget(self._makeSender(), self.options)
            if (spool_dir, spool_max_bytes, spool_fsync) != self._writer_spool:
                log.msg(f"buildbot_stats: {self.describe()}: the new spool settings apply at "
                        "the next start")
            # a new destination or new credentials: a new watch, checking now
            self._startSeriesWatch()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._writer = None
        self._writer_spool = None
        self._pool = None
        self._injected_reactor = None
        self._warned_not_running = False
        self._reader_settings = None
        # the builds' test results being encoded, a slice per reactor turn
        self._encoding = DeferWaiter()
        self._coop = None
        self.series_watch = None
        self.limit_report = None

    def readerSettings(self):
        """The :class:`~buildbot_stats.reading.influxdb.InfluxReader` arguments that
        read what this backend writes (secrets rendered), None for a 2.x bucket."""
        return dict(self._reader_settings) if self._reader_settings else None

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def reactor(self):
        if self._injected_reactor is not None:
            return self._injected_reactor
        if self.master is not None:
            return self.master.reactor
        # standalone use (scripts, the CLI) without an injected reactor
        from twisted.internet import reactor
        return reactor

    def describe(self):
        """This backend and its destination, for log messages (never a credential)."""
        return f"InfluxStorageService {self.name!r} ({self.destination})"

    @defer.inlineCallbacks
    def startService(self):
        yield super().startService()  # applies the configuration the first time
        spool = None
        if self.spool_dir is not None:
            spool_dir = self.spool_dir
            basedir = getattr(self.master, 'basedir', None)
            if not os.path.isabs(spool_dir) and basedir:
                # like every relative path in master.cfg: beside the master
                spool_dir = os.path.join(basedir, spool_dir)
            spool = Spool(spool_dir, self.spool_max_bytes, self.reactor,
                          fsync=self.spool_fsync)
        self._writer_spool = (self.spool_dir, self.spool_max_bytes, self.spool_fsync)
        creator = self._createDatabase if self.create_database else None
        self.limit_report = LimitReport(self.describe(), self.reactor,
                                        describe=self._describeRefused, fix=self._limitFix)
        writer = BatchWriter(self._makeSender(), self.options, self.counters, self.reactor,
                             self.describe(), spool=spool, create_database=creator,
                             on_limit=self.limit_report)
        self._writer = writer
        yield writer.start()
        self._startSeriesWatch()

    def _startSeriesWatch(self):
        """Start the checks of the database's series (docs/storage-influxdb.rst), the
        previous watch, if any, stopped."""
        self.series_watch = SeriesWatch(
            self.describe(), self._makeSender().ask, self.base_url, self._headers,
            self.reactor, interval=self.series_check_interval, db=self.db,
            bucket=self.bucket, org=self.org, configured=self.max_series,
            hint=self._seriesHint)
        if self.limit_report is not None:
            self.limit_report.watch = self.series_watch
            self.limit_report.label = self.describe()
        self.series_watch.start()

    @defer.inlineCallbacks
    def stopService(self):
        if self.series_watch is not None:
            # a check under way is given up before the connections are closed
            yield self.series_watch.stop()
        # the test results being encoded join the writer first (milliseconds per build)
        yield self._encoding.wait()
        writer, self._writer = self._writer, None
        if writer is not None:
            # one flush, with what is left of the StatsService's bound (docs/service.rst)
            yield writer.stop(self.stopBudget())
        if self._pool is not None:
            yield self._pool.closeCachedConnections()
        yield super().stopService()

    def stopTimeout(self):
        return self.options.stop_timeout

    def metrics(self):
        """The delivery counters, and ``limit_rejected`` (of ``rejected``, the points the
        server refused because a series limit was reached); what the series checks know:
        ``series`` (the database's series cardinality), ``series_limit`` (0: none),
        ``build_number_values`` (the most values of the ``build_number`` tag in one
        measurement), ``values_per_tag_limit``, ``series_limit_warning`` (1 past 80 % of a
        limit), each once known; with a spool: ``spool_bytes`` (live files),
        ``spool_writes`` (journal writes, one per reactor iteration that accepted points),
        ``spool_write_errors``, ``spool_torn`` (files whose last write a crash cut short,
        found at start) and ``spool_corrupt`` (files renamed ``*.corrupt`` at start)."""
        out = super().metrics()
        out['limit_rejected'] = self.counters.limit_rejected
        if self.series_watch is not None:
            out.update(self.series_watch.metrics())
        spool = self._writer.spool if self._writer is not None else None
        if spool is not None:
            out.update(spool_bytes=spool.bytes, spool_writes=spool.writes,
                       spool_write_errors=spool.write_errors, spool_torn=spool.torn,
                       spool_corrupt=spool.corrupt)
        return out

    def flush(self, timeout=None):
        """Send what is pending now; fires True when all of it ended, False on timeout.

        ``timeout=None`` means ``stop_timeout``: a flush that waits for a server that is
        down would otherwise hold its caller for ever."""
        if self._writer is None:
            return defer.succeed(True)
        timeout = self.options.stop_timeout if timeout is None else timeout
        if self._encoding.has_waited():
            d = self._encoding.wait()
            d.addCallback(lambda _: self._writer.flush(timeout) if self._writer is not None
                          else True)
            return d
        return self._writer.flush(timeout)

    # -- points ------------------------------------------------------------------------------

    def postStatsValue(self, post_data, series_name, context=None, timestamp=None):
        writer = self._writer
        if writer is None:
            self._droppedNotRunning(1)
            return
        where = describeBuildOf(context)
        try:
            ts = self.reactor.seconds() if timestamp is None else timestamp
            tags = self.tag_policy.addExtraTags(context or {})
            ns = to_epoch_ns(ts)
        except Exception as e:  # a bad timestamp: count it, never raise
            self._rejected(series_name, where, e)
            return
        self._add(writer, series_name, post_data, tags, ns, where)

    def postTestResults(self, run, cases):
        """One build's test results as points of ``test_cases`` and ``test_runs`` (see
        :mod:`~buildbot_stats.storage.influxdb.testlines`); returns at once. The lines are
        encoded a slice of about :data:`TEST_SLICE` seconds per reactor turn."""
        if not cases:
            return
        if self._writer is None:
            self._droppedNotRunning(len(cases) + 1)
            return
        extra = {}
        service = self.parent
        if hasattr(service, 'tag_policy'):
            extra = service.tag_policy.addExtraTags({})
        tags = self.tag_policy.addExtraTags(extra)
        work = self._encodeTests(testPoints(run, cases, tags), run)
        self._encoding.add(self._cooperator().cooperate(work).whenDone())

    def _encodeTests(self, points, run):
        where = f" (builder {run.builder!r}, build #{run.build_number})"
        for series, fields, tags, ns in points:
            writer = self._writer
            if writer is None:  # stopped meanwhile: what is left is dropped
                self.counters.added += 1
                self.counters.dropped += 1
                continue
            with cyclicGCPaused():
                self._add(writer, series, fields, tags, ns, where)
            yield None

    def _add(self, writer, series, fields, tags, ns, where):
        """Encode one point and hand it to ``writer``; one that cannot be encoded is counted
        as rejected and logged with its build (``where``), never raised."""
        try:
            line, dropped = self.encoder.encode(series, fields, tags, ns)
        except Exception as e:  # PointRejected, or a value of a strange type
            self._rejected(series, where, e)
            return
        if dropped:
            what = ', '.join(f"{w} ({why})" for w, why in dropped)
            log.msg(f"buildbot_stats: {self.describe()}: series {series!r}{where}: left out "
                    f"{what}")
        writer.add(line.encode('utf-8'))

    def _rejected(self, series, where, e):
        self.counters.added += 1
        self.counters.rejected += 1
        reason = e if isinstance(e, PointRejected) else f"{type(e).__name__}: {e}"
        log.msg(f"buildbot_stats: error: {self.describe()}: point of series {series!r} "
                f"rejected{where}: {reason}")
        if not isinstance(e, (PointRejected, TypeError, ValueError, OverflowError)):
            log.err(None, "buildbot_stats: unexpected encoder error")

    def _droppedNotRunning(self, n):
        self.counters.added += n
        self.counters.dropped += n
        if not self._warned_not_running:
            self._warned_not_running = True
            log.msg(f"buildbot_stats: error: {self!r} got a point while not running "
                    "(start it first); point dropped")

    def _cooperator(self):
        if self._coop is None:
            reactor = self.reactor
            self._coop = task.Cooperator(
                terminationPredicateFactory=lambda: _SliceOver(TEST_SLICE),
                scheduler=lambda work: reactor.callLater(0, work))
        return self._coop

    # -- the series limit (docs/scaling.rst) ---------------------------------------------------

    def _buildNumberForm(self):
        """How the StatsService writes the seed's build number: 'tag' or 'field'."""
        return getattr(getattr(self.parent, 'tag_policy', None), 'build_number', 'tag')

    def _seriesHint(self):
        if self._buildNumberForm() == 'field':
            return ''
        return (" While build_number is a tag, the seed's captures (build times, properties, "
                "yieldMetricsValue data) add series with every build: "
                "StatsService(build_number='field') stops that (docs/migration.rst).")

    def _describeRefused(self, lines):
        """Which series (and captures) of a refused batch hit the limit."""
        per_build = perBuildSeries(lines)
        found = per_build or measurementsOf(lines)
        parts = []
        for measurement, (builder, key) in found.items():
            owners = ', '.join(c.describe() for c in self.captures
                               if c.writesSeries(measurement, builder))
            parts.append(f"{measurement} (written by {owners or 'no capture of this backend'}"
                         f"; for example the series {key})")
        if not parts:
            return ''
        if per_build:
            return (" Each build adds a new series to " + '; '.join(parts)
                    + ", because build_number is a tag.")
        return " The refused batch wrote to " + '; '.join(parts) + "."

    def _limitFix(self, limit):
        if limit.name in ('columns per table', 'tables per database'):
            return ("Fix: fewer distinct field names per series (the yieldMetricsValue data, "
                    "the properties captured), or ask the server's operator for a higher "
                    "limit.")
        raise_it = ("raise your plan's series quota" if limit.name == 'series cardinality'
                    else f"raise {limit.name} in the [data] section of influxdb.conf (0: no "
                    "limit) and restart InfluxDB")
        if self._buildNumberForm() == 'tag':
            return ("Fix: StatsService(build_number='field') writes the build number as a "
                    "field, so that each builder keeps a fixed number of series "
                    f"(docs/migration.rst); or {raise_it}.")
        return (f"Fix: {raise_it}, or drop the series no longer written (DROP SERIES), or "
                "lower StatsService(max_tag_values=...).")

    # -- HTTP --------------------------------------------------------------------------------

    def _makeSender(self):
        return HTTPBatchSender(self._http, self.write_url, self._headers, self.options.timeout,
                               self.reactor)

    def _makeClient(self, ca_file, verify_ssl):
        self._pool = ClosablePool(self.reactor, persistent=True)
        # one connection per request in flight, kept for the next batch
        self._pool.maxPersistentPerHost = max(2, self.options.max_in_flight)
        agent = Agent(self.reactor, contextFactory=_TLSPolicy(ca_file, verify_ssl),
                      connectTimeout=self.options.timeout, pool=self._pool)
        return treq.client.HTTPClient(agent)

    def _createDatabase(self):
        """CREATE DATABASE on a 404 'database not found' (InfluxDB 1.x); Deferred[bool]."""
        q = 'CREATE DATABASE "{}"'.format(self.db.replace('\\', '\\\\').replace('"', '\\"'))
        headers = dict(self._headers)
        headers[b'Content-Type'] = [b'application/x-www-form-urlencoded']
        body = urllib.parse.urlencode({'q': q}).encode('utf-8')
        sender = self._makeSender()
        d = sender.post(f"{self.base_url}/query", body, headers)

        def done(outcome):
            ok = outcome.kind == 'accepted'
            log.msg(f"buildbot_stats: {self.describe()}: create_database: {q}: "
                    + ("done" if ok else f"failed: {outcome.message}"))
            return ok

        return d.addCallback(done)


def _baseUrl(url, port, ssl):
    """``scheme://host:port/path`` from the spec's url and port (ValueError if they clash)."""
    url = url.strip()
    if '://' in url:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ('http', 'https'):
            raise ValueError(f"url scheme must be http or https, got {parts.scheme!r}")
        if parts.username or parts.password:
            raise ValueError("url must not hold credentials; use user/password or token")
        if parts.query or parts.fragment:
            # not shown: a query may hold a token
            raise ValueError("url must not have a query or fragment (?... or #...)")
        host = parts.hostname
        try:
            url_port = parts.port
        except ValueError as e:
            raise ValueError("bad port in url (the part after the host's ':')") from e
        if url_port is not None and port is not None and url_port != port:
            raise ValueError(f"url {url!r} says port {url_port} but port is {port!r}")
        scheme, path = parts.scheme, parts.path.rstrip('/')
        port = url_port if url_port is not None else port
    else:
        if '@' in url:  # user:password@host: not shown
            raise ValueError("url must not hold credentials; use user/password or token")
        if '/' in url:
            raise ValueError(f"url must be a host name or an http(s) URL, got {url!r}")
        scheme, host, path = ('https' if ssl else 'http'), url, ''
        if host.startswith('['):
            host = host.strip('[]')
    if not host:
        raise ValueError(f"url {url!r} has no host")
    if port is None:
        port = DEFAULT_PORT
    if ':' in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{path}"


class _SliceOver:
    """True once ``seconds`` have passed since it was made (a cooperator's slice)."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def __call__(self):
        return time.monotonic() >= self.end


@implementer(IPolicyForHTTPS)
class _TLSPolicy:
    """HTTPS settings: the system's trust store, or ``ca_file``; or no verification."""

    def __init__(self, ca_file, verify):
        self.ca_file = ca_file
        self.verify = verify
        self._trust = None

    def creatorForNetloc(self, hostname, port):
        if not self.verify:
            return ssl.CertificateOptions(verify=False)
        if self.ca_file is not None and self._trust is None:
            # read once, on the first HTTPS connection (a small local file)
            with open(self.ca_file, 'rb') as f:
                self._trust = ssl.Certificate.loadPEM(f.read())
        trust = self._trust if self._trust is not None else ssl.platformTrust()
        return ssl.optionsForClientTLS(hostname.decode('ascii'), trustRoot=trust)
