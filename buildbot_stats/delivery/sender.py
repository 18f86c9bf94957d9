"""One HTTP write request per batch, and what its answer means for the batch.

The sender never raises: every attempt ends in an :class:`Outcome` that the writer acts on.
It knows nothing about buffers or retries; the writer knows nothing about HTTP.
"""

from __future__ import annotations

import email.utils
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


class Outcome:
    __slots__ = ('kind', 'status', 'message', 'rejected', 'retry_after', 'database_not_found')

    def __init__(self, kind, status=None, message='', rejected=None, retry_after=None,
                 database_not_found=False):
        self.kind = kind
        self.status = status
        self.message = message
        self.rejected = rejected
        self.retry_after = retry_after
        self.database_not_found = database_not_found

    def __repr__(self):
        return f"<Outcome {self.kind} status={self.status} {self.message!r}>"


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
    """The :class:`Outcome` of an HTTP answer (a pure function, tested alone)."""
    text = body[:_MESSAGE_LIMIT].decode('utf-8', 'replace').strip()
    message = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    if 200 <= status < 300:
        return Outcome(ACCEPTED, status)
    if status in (400, 422):
        m = _DROPPED.search(body)
        if m:
            return Outcome(PARTIAL, status, message, rejected=int(m.group(1)))
        return Outcome(BAD_REQUEST, status, message)
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

    def _attempt(self, url, body, headers):
        d = self._request(url, body, headers)
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
    def _request(self, url, body, headers):
        response = yield self.http_client.request('POST', url, data=WholeBody(body),
                                                  headers=headers)
        try:
            content = yield treq.content(response)
        except defer.CancelledError:
            # the server sent headers and then hung: close the connection, it is useless
            _closeTransport(response)
            raise
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
