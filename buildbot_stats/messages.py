"""MQ messages in one shape, whatever Buildbot's MQ carried them.

Buildbot's ``simple`` MQ hands a consumer the very dict the data API produced: times are
``datetime`` objects in UTC. The ``wamp`` MQ (several masters on a crossbar router) sends the
same dict through JSON (``buildbot.util.toJson``): every datetime arrives as whole epoch
seconds (an ``int``), tuples as lists. A capture or a user's callback written for one MQ
would then see other types under the other (``complete_at - started_at`` raises
``TypeError`` on ints).

:func:`normalizeMessage` is called once on every message the StatsService consumes, by its
subscription table (:mod:`buildbot_stats.subscriptions`), before any capture or other
component sees it. It turns the fields the data API declares as dates (``types.DateTime``,
read from Buildbot's own resource types, nested entities included) back into ``datetime``
objects in UTC, the shape the data API gives. A message that already has datetimes (the
simple MQ) is returned as it is, and so is anything it does not know.
"""

from __future__ import annotations

import datetime
import inspect

from twisted.python import reflect

from buildbot.data import base
from buildbot.data import connector
from buildbot.data import types

UTC = datetime.timezone.utc

#: The routing key of the StatsService's own ``yieldMetricsValue`` message.
YIELD_DATA = ("stats-yieldMetricsValue", "stats-yield-data")
#: The routing key under which the service consumes a build's end (Buildbot also announces
#: it as ``('builds', id, 'finished')`` and ``('workers', id, 'builds', id, 'finished')``:
#: everything of ours that follows builds ending uses this one, so it is consumed once).
BUILD_FINISHED = ("builders", None, "builds", None, "finished")


def _entityTypes():
    """``{plural name: its Entity type}`` of every resource type Buildbot's data API has."""
    found = {}
    for name in connector.DataConnector.submodules:
        module = reflect.namedModule(name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, base.ResourceType):
                entity = getattr(obj, 'entityType', None)
                if isinstance(entity, types.Entity) and obj.plural:
                    found[obj.plural] = entity
    return found


_ENTITIES = None


def entityTypes():
    global _ENTITIES
    if _ENTITIES is None:
        _ENTITIES = _entityTypes()
    return _ENTITIES


def _unwrap(typ):
    while isinstance(typ, types.NoneOk):
        typ = typ.nestedType
    return typ


def toDatetime(value):
    """Epoch seconds (int or float) as a UTC datetime; anything else unchanged."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return value
    return value


def _convert(typ, value):
    """``value`` (of data API type ``typ``) with its dates as datetimes; a copy only when
    something changed."""
    typ = _unwrap(typ)
    if value is None:
        return value
    if isinstance(typ, types.DateTime):
        return toDatetime(value)
    if isinstance(typ, types.Entity):
        return normalizeEntity(typ, value)
    if isinstance(typ, types.List) and isinstance(value, list):
        items = [_convert(typ.of, v) for v in value]
        if any(a is not b for a, b in zip(items, value)):
            return items
    return value


_DATED = {}


def _datedFields(entity):
    """The fields of ``entity`` that are or may hold dates (looked at once per type)."""
    fields = _DATED.get(id(entity))
    if fields is None:
        fields = []
        for name, typ in entity.fields.items():
            inner = _unwrap(typ)
            if isinstance(inner, types.List):
                inner = _unwrap(inner.of)
            if isinstance(inner, (types.DateTime, types.Entity)):
                fields.append((name, typ))
        _DATED[id(entity)] = fields
    return fields


def normalizeEntity(entity, msg):
    """A dict of ``entity`` (a data API Entity type) with its date fields as datetimes."""
    if not isinstance(msg, dict):
        return msg
    out = None
    for name, typ in _datedFields(entity):
        if name not in msg:
            continue
        value = msg[name]
        converted = _convert(typ, value)
        if converted is not value:
            if out is None:
                out = dict(msg)
            out[name] = converted
    return msg if out is None else out


def entityOfKey(routingKey):
    """The Entity type of the messages of a routing key, or None.

    Data API events are keyed ``(..., collection, id, event)``: ``('builders', '7',
    'builds', '42', 'finished')`` carries a build, ``('builds', '42', 'steps', '9',
    'finished')`` a step.
    """
    if len(routingKey) < 3:
        return None
    return entityTypes().get(routingKey[-3])


def normalizeMessage(routingKey, msg):
    """``msg`` as the data API shapes it: dates as UTC datetimes (see the module doc).

    Our own ``yieldMetricsValue`` message keeps its ``timestamp`` (float epoch seconds, as
    every point time) and gets its ``build_data`` normalized as a build.
    """
    if not isinstance(msg, dict):
        return msg
    routingKey = tuple(routingKey)
    if routingKey == YIELD_DATA:
        build = msg.get('build_data')
        converted = normalizeEntity(entityTypes()['builds'], build)
        if converted is build:
            return msg
        return dict(msg, build_data=converted)
    entity = entityOfKey(routingKey)
    if entity is None:
        return msg
    return normalizeEntity(entity, msg)
