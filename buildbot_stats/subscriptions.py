"""The subscription table: every part of the StatsService that wants Buildbot's MQ messages
declares the routing keys it wants, and the table consumes each key once.

The contract (docs/architecture.rst, "Subscriptions"): a component (the captures, the
look-ups' feeds, the build-data recorder, and any later one) is registered with the
:class:`~buildbot_stats.service.StatsService` (``service.subscribe(component)``) and has

* ``subscriptions()``: the :class:`Subscription` list it wants now; asked again at every
  (re)configuration, so what it returns may change with the configuration;
* optionally ``subscribed(keys)``: called once the MQ consumers are in place, with the set of
  routing keys now delivered to it (empty when the service stops consuming), so that it can
  begin (or stop) trusting what it learns from them.

The table runs ONE MQ consumer per distinct routing key, whoever wants it. A message is put
in the data API's shape once (:func:`~buildbot_stats.messages.normalizeMessage`) and handed
to every subscription of its key in the order of registration, each one's failure logged and
kept from the others. A reconfiguration replaces the lists the consumers dispatch to and
starts or stops only the consumers of keys that appear or disappear: never two consumers for
one key, never a key dropped while someone wants it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from twisted.internet import defer
from twisted.python import log
from twisted.python.failure import Failure

from buildbot.util.deferwaiter import DeferWaiter

from buildbot_stats.messages import normalizeMessage


@dataclass(frozen=True)
class Subscription:
    """One routing key one component wants, and what to call with its messages."""

    #: the MQ routing key, ``None`` as a wildcard: ``('builders', None, 'builds', None,
    #: 'finished')``
    key: tuple
    #: ``handler(routingKey, msg)``, ``msg`` in the data API's shape; returns None, or a
    #: Deferred the service's :meth:`~SubscriptionTable.drain` waits for
    handler: Callable
    #: who it is, for the log line of a failure (``'CaptureBuildDuration(...)'``)
    owner: str
    #: False: only messages of builds this master ran (or without a ``masterid``): with
    #: several masters on one MQ every master sees every build (docs/multimaster.rst)
    every_master: bool = False
    #: True: also the messages a backfill or a catch-up replays from Buildbot's database
    #: (a build's ``finished`` message, ``yieldMetricsValue`` data), as if live
    replayed: bool = False
    #: ``failed(failure, routingKey, msg)`` instead of the default log line (the captures'
    #: own accounting); None: logged with a traceback and counted in ``errors``
    failed: Callable | None = None


class SubscriptionTable:
    """The routing keys consumed and, per key, the subscriptions its messages go to.

    :param master_of: returns the master (its ``mq`` and ``masterid`` are read when used)
    """

    def __init__(self, master_of):
        self._master_of = master_of
        self._by_key = {}      # key -> [Subscription], in the order of registration
        self._consumers = {}   # key -> the MQ consumer
        self._inflight = DeferWaiter()
        #: messages skipped because another master ran the build
        self.foreign_messages = 0
        #: failures of handlers without a ``failed`` of their own
        self.errors = 0

    @property
    def keys(self):
        """The routing keys consumed now."""
        return set(self._consumers)

    def wants(self, key, replayed=False):
        """Whether some subscription takes messages of ``key`` (replayed ones, if asked)."""
        return any(s.replayed or not replayed for s in self._by_key.get(tuple(key), ()))

    @defer.inlineCallbacks
    def update(self, subscriptions):
        """Dispatch to ``subscriptions`` from now on; consume the keys they name, once each,
        and stop consuming the others."""
        by_key = {}
        for sub in subscriptions:
            by_key.setdefault(tuple(sub.key), []).append(sub)
        # the consumers of the keys kept dispatch to the new lists from the next message on
        self._by_key = by_key
        mq = self._master_of().mq
        for key in sorted(set(self._consumers) - set(by_key), key=repr):
            yield self._consumers.pop(key).stopConsuming()
        for key in sorted(set(by_key) - set(self._consumers), key=repr):
            consumer = yield mq.startConsuming(functools.partial(self._consume, key), key)
            if key in self._consumers or key not in self._by_key:
                # a later update (a reconfig overlapping this one) already decided this key
                yield consumer.stopConsuming()
                continue
            self._consumers[key] = consumer

    @defer.inlineCallbacks
    def stop(self):
        """Consume nothing (what to dispatch to is kept: :meth:`update` starts again)."""
        consumers, self._consumers = self._consumers, {}
        for key in sorted(consumers, key=repr):
            yield consumers[key].stopConsuming()

    def drain(self):
        """A Deferred firing when every handler's Deferred dispatched so far has fired."""
        return self._inflight.wait()

    def _consume(self, key, routingKey, msg):
        self.dispatch(key, routingKey, msg)

    def dispatch(self, key, routingKey, msg, replayed=False):
        """Hand ``msg`` (of routing key ``routingKey``, consumed under ``key``) to every
        subscription of ``key``; ``replayed``: only to those that take replayed messages."""
        subs = self._by_key.get(key)
        if not subs:
            return
        # the same shape under every MQ (the wamp MQ sends datetimes as epoch seconds)
        msg = normalizeMessage(routingKey, msg)
        ours = None
        for sub in subs:
            if replayed and not sub.replayed:
                continue
            if not sub.every_master:
                if ours is None:
                    ours = self._fromThisMaster(msg)
                    if not ours:
                        self.foreign_messages += 1
                if not ours:
                    continue
            try:
                result = sub.handler(routingKey, msg)
            except Exception:
                self._failed(Failure(), sub, routingKey, msg)
                continue
            # most handlers finish at once (their look-ups are cached): no Deferred then
            if result is not None and isinstance(result, defer.Deferred):
                result.addErrback(self._failed, sub, routingKey, msg)
                self._inflight.add(result)

    def _fromThisMaster(self, msg):
        # Only the master that ran the build (or took the yieldMetricsValue call) writes its
        # points. A message without masterid is everyone's. Edge cases (a master dying
        # mid-build): docs/multimaster.rst.
        ours = self._master_of().masterid
        theirs = msg.get('masterid') if isinstance(msg, dict) else None
        return ours is None or theirs is None or theirs == ours

    def _failed(self, failure, sub, routingKey, msg):
        if sub.failed is not None:
            sub.failed(failure, routingKey, msg)
            return
        self.errors += 1
        log.err(failure, f"buildbot_stats: {sub.owner} failed on the message "
                         f"{'/'.join(map(str, routingKey))}")
