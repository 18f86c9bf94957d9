"""The build-data record of ``yieldMetricsValue``: its names and its JSON documents.

Written by :mod:`buildbot_stats.history.recorder`, read back by
:mod:`buildbot_stats.history.reader` (backfill, catch-up); the layout is documented in
docs/history.rst. Two forms, both read:

* since this version, ONE row per build, named :data:`RECORD_NAME`, written when the build
  finishes, with every data name::

      {"format": 2, "data": {"coverage": [{"timestamp": 1718000000.123456,
                                           "post_data": {"percent": 87.5}}, ...], ...}}

* before, one row per build and data name, named ``stats.<data_name>``, rewritten at each
  call::

      {"format": 1, "values": [{"timestamp": 1718000000.123456, "post_data": {...}}, ...]}

``timestamp`` is the time the live point carried; values are in call order.
"""

from __future__ import annotations

import json

#: The name of the one build-data row of a build (Buildbot's ``build_data.name``).
RECORD_NAME = 'buildbot_stats'
#: Its ``source`` column.
SOURCE = 'buildbot_stats'
#: The names of the rows of earlier versions: ``stats.<data_name>``.
OLD_PREFIX = 'stats.'

RECORD_FORMAT = 2
OLD_FORMAT = 1


def encodeEntry(timestamp, post_data):
    """One call as its JSON text in a record (``{"timestamp": ..., "post_data": ...}``),
    made when the call is taken, so that a dict the step changes later is recorded as it was.
    Raises ValueError or TypeError for data JSON cannot hold (NaN, a datetime, bytes...)."""
    return json.dumps({'timestamp': timestamp, 'post_data': post_data},
                      separators=(',', ':'), allow_nan=False)


def encodeRecord(entries):
    """The value (UTF-8 JSON bytes) of a build's :data:`RECORD_NAME` row: ``entries`` is
    ``{data_name: [entry, ...]}``, each entry made by :func:`encodeEntry`."""
    body = ','.join(f'{json.dumps(name)}:[{",".join(items)}]'
                    for name, items in entries.items())
    return f'{{"format":{RECORD_FORMAT},"data":{{{body}}}}}'.encode('utf-8')


def recordEntries(value):
    """``{data_name: [entry, ...]}`` of a stored :data:`RECORD_NAME` row, to append to it;
    ValueError (or KeyError, TypeError) when it is not one of ours."""
    return {name: [encodeEntry(ts, pd) for ts, pd in values]
            for name, values in decodeRecord(value).items()}


def _values(entries):
    return [(float(item['timestamp']), item['post_data']) for item in entries]


def _load(value):
    if isinstance(value, memoryview):
        value = value.tobytes()
    return json.loads(value)


def decodeRecord(value):
    """``{data_name: [(timestamp, post_data)]}`` of a :data:`RECORD_NAME` row's value;
    ValueError (or KeyError, TypeError) when it is not one of ours."""
    doc = _load(value)
    if not isinstance(doc, dict) or doc.get('format') != RECORD_FORMAT:
        raise ValueError("not a buildbot_stats build data record")
    return {str(name): _values(entries) for name, entries in doc['data'].items()}


def decodeOldRow(value):
    """``[(timestamp, post_data)]`` of a ``stats.<data_name>`` row's value (earlier
    versions); ValueError (or KeyError, TypeError) when it is not one of ours."""
    doc = _load(value)
    if not isinstance(doc, dict) or doc.get('format') != OLD_FORMAT:
        raise ValueError("not a buildbot_stats build data document")
    return _values(doc['values'])


def decodeRow(name, value):
    """``{data_name: [(timestamp, post_data)]}`` of one of our rows, either form."""
    if name == RECORD_NAME:
        return decodeRecord(value)
    return {name[len(OLD_PREFIX):]: decodeOldRow(value)}


def merged(into, data):
    """``into`` (``{data_name: [values]}``) with ``data``'s values appended, name by name."""
    for name, values in data.items():
        into.setdefault(name, []).extend(values)
    return into
