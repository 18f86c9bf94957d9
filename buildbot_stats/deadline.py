"""Waiting for a Deferred no longer than a bound, without cancelling it."""

from __future__ import annotations

from twisted.internet import defer


def within(reactor, d, seconds):
    """A Deferred firing True when ``d`` fires, False if ``seconds`` pass first.

    ``d`` itself is left alone (not cancelled): the work goes on, the caller just stops
    waiting for it, which is what a stop bound wants of writes already under way.
    """
    out = defer.Deferred()

    def fire(result):
        if timer.active():
            timer.cancel()
        if not out.called:
            out.callback(True)

    timer = reactor.callLater(max(0.0, seconds), lambda: out.called or out.callback(False))
    d.addBoth(fire)
    return out
