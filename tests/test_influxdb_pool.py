"""The InfluxDB backend's connection pool once closed: a request still under way then (a
write the stop's bound gave up) does not leave its connection cached with a reactor timer
that outlives the service (trial's "reactor unclean" after a stop)."""

import treq
from twisted.internet import defer
from twisted.internet import reactor
from twisted.trial import unittest
from twisted.web import resource
from twisted.web import server
from twisted.web.client import Agent
from twisted.web.client import HTTPConnectionPool

from buildbot_stats.storage.influxdb.backend import ClosablePool


class SlowWrite(resource.Resource):
    """Answers each request when the test says so."""
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.waiting = []
        self.arrived = defer.Deferred()

    def render_POST(self, request):
        self.waiting.append(request)
        if not self.arrived.called:
            self.arrived.callback(None)
        return server.NOT_DONE_YET


class ClosedPoolTest(unittest.TestCase):

    @defer.inlineCallbacks
    def closeDuringRequest(self, pool_class):
        site = SlowWrite()
        port = reactor.listenTCP(0, server.Site(site), interface='127.0.0.1')
        self.addCleanup(port.stopListening)
        returned = defer.Deferred()

        class Watched(pool_class):
            def _putConnection(self, key, connection):
                super()._putConnection(key, connection)
                returned.callback(None)
        pool = Watched(reactor, persistent=True)
        client = treq.client.HTTPClient(Agent(reactor, pool=pool))
        url = f"http://127.0.0.1:{port.getHost().port}/write"
        answer = client.post(url, data=b'm v=1')
        yield site.arrived
        yield pool.closeCachedConnections()  # the stop, the request under way
        request = site.waiting.pop()
        request.setResponseCode(204)
        request.finish()
        response = yield answer
        yield response.content()
        # the connection goes back to the pool once the response is read
        yield returned
        kept = {key: list(conns) for key, conns in pool._connections.items() if conns}
        timers = [t for t in pool._timeouts.values() if t.active()]
        for t in timers:  # (the plain pool's, so that this test leaves a clean reactor)
            t.cancel()
        for conns in kept.values():
            for c in conns:
                c.transport.loseConnection()
        return kept, timers

    @defer.inlineCallbacks
    def test_a_connection_back_after_the_close_is_closed_not_kept(self):
        kept, timers = yield self.closeDuringRequest(ClosablePool)
        self.assertEqual((kept, timers), ({}, []))

    @defer.inlineCallbacks
    def test_twisted_pool_keeps_it_with_a_timer(self):
        # what ClosablePool is for: Twisted's own pool caches it, its timer pending
        kept, timers = yield self.closeDuringRequest(HTTPConnectionPool)
        self.assertEqual(len(timers), 1)
        self.assertEqual(sum(len(c) for c in kept.values()), 1)

