"""A local twisted.web server on loopback that misbehaves on command.

Each request to any path takes the next scripted behaviour (or answers 204 once the script
is used up)::

    server.script = [
        ('status', 500, b'boom', {}),          # an HTTP answer
        ('status', 503, b'', {b'Retry-After': b'1'}),
        ('hang',),                             # accept, read, never answer
        ('reset',),                            # close the connection without answering
        ('fn', callable),                      # callable(request, body) -> (status, body)
    ]

``server.requests`` records ``(path, body, headers)`` of every request, answered or not.

Queries (a path ending in ``/query``: the InfluxDB backend's series checks) are apart:
recorded in ``server.queries`` and answered by ``server.query_script`` (the same steps; an
empty InfluxQL answer, 200, once it is used up), so that a script of writes is the writes'.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.web import resource
from twisted.web import server as webserver


EMPTY_ANSWER = b'{"results":[{"statement_id":0}]}'


class _Root(resource.Resource):
    isLeaf = True

    def __init__(self, fault):
        super().__init__()
        self.fault = fault

    def render(self, request):
        body = request.content.read()
        if request.path.endswith(b'/query'):
            self.fault.queries.append((request.path, body, request.requestHeaders))
            script, default = self.fault.query_script, ('status', 200, EMPTY_ANSWER, {})
        else:
            self.fault.requests.append((request.path, body, request.requestHeaders))
            self.fault.times.append(reactor.seconds())
            script, default = self.fault.script, ('status', 204, b'', {})
        step = script.pop(0) if script else default
        kind = step[0]
        if kind == 'hang':
            self.fault.hanging.append(request)
            return webserver.NOT_DONE_YET
        if kind == 'reset':
            request.transport.abortConnection()
            return webserver.NOT_DONE_YET
        if kind == 'fn':
            status, answer = step[1](request, body)
            headers = {}
        else:
            _, status, answer, headers = step
        request.setResponseCode(status)
        for k, v in headers.items():
            request.setHeader(k, v)
        return answer


class FaultServer:
    def __init__(self):
        self.script = []
        self.requests = []
        self.query_script = []
        self.queries = []
        self.times = []
        self.hanging = []
        self.site = webserver.Site(_Root(self))
        self.port = reactor.listenTCP(0, self.site, interface='127.0.0.1')
        self.url = f'http://127.0.0.1:{self.port.getHost().port}'

    def bodies(self, path=b'/write'):
        return [b for p, b, _ in self.requests if p == path]

    def stop(self):
        for request in self.hanging:
            if request.channel is not None:
                request.transport.abortConnection()
        self.hanging = []
        return self.port.stopListening()
