"""One HTTP write request per batch, and what its answer means for the batch.

The sender never raises: every attempt ends in an :class:`Outcome` that the writer acts on.
It knows nothing about buffers or retries; the writer knows nothing about HTTP.
"""

from __future__ import annotations

import email.utils
import json
import re

from twisted.internet import defer
from twisted.internet import error
from twisted.web import client as webclient
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

import treq

# What the writer does with the batch.
ACCEPTED = 'accepted'      # 2xx: written
PARTIAL = 'partial'        # 400 naming how many points it dropped: the rest was written
BAD_REQUEST = 'bad'        # 400/422 without a count: some line is refused; isolate it
TOO_LARGE = 'too-large'    # 413: split the batch
RETRY = 'retry'            # 5xx, 429, timeouts, connection errors, anything unknown: keep
AUTH = 'auth'              # 401, 403: keep, wait for the operator
NOT_FOUND = 'not-found'    # 404: keep; maybe create the database

_DROPPED = re.compile(rb'dropped=(\d+)')
_MESSAGE_LIMIT = 300


class Limit:
    """A limit of the server that refused points for the series (or columns) they would
    create; see :func:`recognizeLimit`.

    :param name: the limit as the server's documentation names it
        (``'max-series-per-database'``, ``'max-values-per-tag'``, ``'series cardinality'``
        for a hosted plan's quota, ``'columns per table'``, ``'tables per database'``)
    :param value: the limit when the answer says it, else None
    :param measurement: for ``max-values-per-tag``: the measurement, tag and value the server
        named
    """

    __slots__ = ('name', 'value', 'measurement', 'tag', 'tag_value')

    def __init__(self, name, value=None, measurement=None, tag=None, tag_value=None):
        self.name = name
        self.value = value
        self.measurement = measurement
        self.tag = tag
        self.tag_value = tag_value

    def describe(self):
        """``max-series-per-database (25)``; with the tag of a per-tag limit."""
        text = self.name + (f" ({self.value})" if self.value is not None else '')
        if self.tag is not None:
            text += f" for tag {self.tag!r} of measurement {self.measurement!r}"
        return text

    def __eq__(self, other):
        return isinstance(other, Limit) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self):
        return f"<Limit {self.describe()}>"


# What servers say when a write would pass a cardinality limit: InfluxDB 1.x (1.1 and later:
# a partial write; 1.0: a whole refusal), InfluxDB Cloud 2 (TSM: "Series cardinality exceeds
# your plan's limit" / "... service quota", with 503 or 429), InfluxDB 3 (columns per table,
# tables per database: "service limit reached", "... limit of N").
_MAX_SERIES = re.compile(r'max[- ]series[- ]per[- ]database(?: limit)? exceeded'
                         r'(?:[^()\n]{0,80}\((?:\d+/)?(\d+)\))?', re.IGNORECASE)
_MAX_VALUES = re.compile(
    r'max-values-per-tag limit exceeded \((\d+)/(\d+)\)(?::\s*measurement="((?:[^"\\]|\\.)*)"'
    r'\s+tag="((?:[^"\\]|\\.)*)"\s+value="((?:[^"\\]|\\.)*)")?', re.IGNORECASE)
_CARDINALITY = re.compile(r'series cardinality exceeds', re.IGNORECASE)
_COLUMNS = re.compile(r'columns? per table|number of columns|column limit|create columns',
                      re.IGNORECASE)
_TABLES = re.compile(r'tables? per database|number of tables|table limit|create tables?\b',
                     re.IGNORECASE)
_SERVICE_LIMIT = re.compile(r'service limit reached|would exceed|limit (?:is|of) \d+',
                            re.IGNORECASE)
_LIMIT_VALUE = re.compile(r'limit (?:is|of) (\d+)', re.IGNORECASE)


def serverMessage(body):
    """The text of an error answer: the ``error`` or ``message`` of a JSON body (InfluxDB's
    forms), else the body as text."""
    text = body.decode('utf-8', 'replace').strip()
    if text.startswith('{'):
        try:
            doc = json.loads(text)
        except ValueError:
            return text
        if isinstance(doc, dict):
            for key in ('error', 'message'):
                if isinstance(doc.get(key), str):
                    return doc[key]
    return text


def _unquote(text):
    return re.sub(r'\\(.)', r'\1', text) if text is not None else None


def recognizeLimit(text):
    """The :class:`Limit` an error message names, or None (a pure function)."""
    m = _MAX_SERIES.search(text)
    if m:
        return Limit('max-series-per-database', int(m.group(1)) if m.group(1) else None)
    m = _MAX_VALUES.search(text)
    if m:
        return Limit('max-values-per-tag', int(m.group(2)), _unquote(m.group(3)),
                     _unquote(m.group(4)), _unquote(m.group(5)))
    if _CARDINALITY.search(text):
        return Limit('series cardinality')
    if _SERVICE_LIMIT.search(text):
        m = _LIMIT_VALUE.search(text)
        value = int(m.group(1)) if m else None
        if _COLUMNS.search(text):
            return Limit('columns per table', value)
        if _TABLES.search(text):
            return Limit('tables per database', value)
    return None


class Outcome:
    """What one write attempt came to. ``limit``: the :class:`Limit` the server named when
    it refused points for the series they would create (counted apart by the writer)."""

    __slots__ = ('kind', 'status', 'message', 'rejected', 'retry_after', 'database_not_found',
                 'limit')

    def __init__(self, kind, status=None, message='', rejected=None, retry_after=None,
                 database_not_found=False, limit=None):
        self.kind = kind
        self.status = status
        self.message = message
        self.rejected = rejected
        self.retry_after = retry_after
        self.database_not_found = database_not_found
        self.limit = limit

    def __repr__(self):
        limit = f" {self.limit!r}" if self.limit is not None else ''
        return f"<Outcome {self.kind} status={self.status} {self.message!r}{limit}>"


def parseRetryAfter(value, now):
    """Seconds to wait from a ``Retry-After`` header value (seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.decode('latin-1') if isinstance(value, bytes) else value
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - now, 0.0)


def classify(status, body, headers_retry_after, now):
    """The :class:`Outcome` of an HTTP answer (a pure function, tested alone).

    A refusal that names a cardinality limit (:func:`recognizeLimit`) carries it: a partial
    write (1.x, ``dropped=N``) stays PARTIAL; a whole batch refused for it, whatever the
    status (InfluxDB Cloud answers 503 or 429, InfluxDB 1.0 answered 500), is BAD_REQUEST:
    the writer splits it until the lines the server refuses are found, and the lines of
    series that exist are written. Retrying it as a whole would never succeed."""
    text = body[:_MESSAGE_LIMIT].decode('utf-8', 'replace').strip()
    message = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    if 200 <= status < 300:
        return Outcome(ACCEPTED, status)
    limit = recognizeLimit(serverMessage(body[:4096])) if status >= 400 else None
    if status in (400, 422):
        m = _DROPPED.search(body)
        if m:
            return Outcome(PARTIAL, status, message, rejected=int(m.group(1)), limit=limit)
        return Outcome(BAD_REQUEST, status, message, limit=limit)
    if limit is not None and status in (429, 500, 503):
        return Outcome(BAD_REQUEST, status, message, limit=limit)
    if status == 413:
        return Outcome(TOO_LARGE, status, message)
    if status in (401, 403):
        return Outcome(AUTH, status, message)
    if status == 404:
        return Outcome(NOT_FOUND, status, message,
                       database_not_found=b'database not found' in body.lower())
    return Outcome(RETRY, status, message,
                   retry_after=parseRetryAfter(headers_retry_after, now))


@implementer(IBodyProducer)
class WholeBody:
    """A request body handed to the connection in one write.

    treq wraps ``bytes`` in a ``FileBodyProducer``, which writes 64 KiB per turn of Twisted's
    global cooperator: a 500 KB batch then waits for eight reactor turns, each of which may be
    busy encoding points, before InfluxDB sees its end. The transport buffers what the socket
    cannot take at once, so one write costs nothing more.
    """

    def __init__(self, body):
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer):
        consumer.write(self.body)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class HTTPBatchSender:
    """POSTs a body of lines to one write URL.

    :param http_client: a treq ``HTTPClient`` (or :class:`treq.testing.StubTreq`)
    :param url: the full write URL, with its query (no credentials in it)
    :param headers: request headers (may hold credentials: never logged)
    :param timeout: seconds for the whole request, answer body included
    :param reactor: for the timeout and for ``Retry-After`` dates
    """

    def __init__(self, http_client, url, headers, timeout, reactor):
        self.http_client = http_client
        self.url = url
        self.headers = headers
        self.timeout = timeout
        self.reactor = reactor

    def write(self, body):
        """POST ``body``; a Deferred that fires with an :class:`Outcome`, never fails."""
        return self._attempt(self.url, body, self.headers)

    def post(self, url, body, headers):
        """POST to another URL (e.g. a query) with the same timeout and classification."""
        return self._attempt(url, body, headers)

    def ask(self, url, body, headers):
        """POST a query: a Deferred firing with ``(status, body bytes)`` when the server
        answered, or with an :class:`Outcome` (RETRY, its message saying why) when it did
        not; it never fails. Same client, headers and timeout as the writes."""
        return self._attempt(url, body, headers, answer=_asked)

    def _attempt(self, url, body, headers, answer=None):
        d = self._request(url, body, headers, answer or self._classified)
        timedOut = []

        def onTimeout():
            timedOut.append(True)
            d.cancel()

        timer = self.reactor.callLater(self.timeout, onTimeout)

        def done(result):
            if timer.active():
                timer.cancel()
            return result

        d.addBoth(done)
        d.addErrback(self._failed, timedOut)
        return d

    @defer.inlineCallbacks
    def _request(self, url, body, headers, answer):
        response = yield self.http_client.request('POST', url, data=WholeBody(body),
                                                  headers=headers)
        try:
            content = yield treq.content(response)
        except defer.CancelledError:
            # the server sent headers and then hung: close the connection, it is useless
            _closeTransport(response)
            raise
        return answer(response, content)

    def _classified(self, response, content):
        return classify(response.code, content, response.headers.getRawHeaders(
            b'retry-after', [None])[0], self.reactor.seconds())

    def _failed(self, failure, timedOut):
        if timedOut or failure.check(defer.CancelledError, error.TimeoutError):
            return Outcome(RETRY, message=f"no answer within {self.timeout:g} s")
        if failure.check(webclient.ResponseNeverReceived, webclient.ResponseFailed,
                         error.ConnectError, error.ConnectionLost, error.ConnectionDone,
                         error.DNSLookupError):
            return Outcome(RETRY, message=f"connection failed: {_reasons(failure)}")
        # anything else is a bug or an unexpected library error: still keep the points
        return Outcome(RETRY, message=f"request failed: {failure.getErrorMessage()}")


def _asked(response, content):
    return response.code, content


def _reasons(failure):
    reasons = getattr(failure.value, 'reasons', None)
    if reasons:
        return '; '.join(r.getErrorMessage() for r in reasons)
    return failure.getErrorMessage() or failure.type.__name__


def _closeTransport(response):
    try:
        response.original._transport.stopProducing()
    except Exception:  # best effort: the connection may be gone already
        pass
