"""How a point is laid out in the embedded store since schema version 3: interned names, no
copies.

A row of ``points`` holds the series as the id of its name (``series`` table), the tags as
the id of their JSON object (``tagsets``) without the ``build_number`` tag, which is the
integer column ``build`` instead (-1: none), and the fields as the id of their names
(``fieldsets``, a JSON array) and a JSON array of their values (``vals``). A store keeps a
few hundred series, tag sets and field name lists, so a point costs its time, a few small
integers and its values. The mapping is exact both ways: :func:`splitTags` and
:func:`joinTags`, :func:`splitFields` and :func:`joinFields`.

Shared by the writer (:mod:`~buildbot_stats.storage.sqlite.writer`), the migration from
version 2 (:mod:`~buildbot_stats.storage.sqlite.schema`) and the readers
(:mod:`buildbot_stats.reading.sqlite`).
"""

from __future__ import annotations

import json

#: ``build`` of a point without a ``build_number`` tag (a tag that is not a plain
#: non-negative integer stays in the tag set).
NO_BUILD = -1

INSERT_POINT = ("INSERT OR {} INTO points (series, time_us, tagset, build, fieldset, vals)"
                " VALUES (?, ?, ?, ?, ?, ?)")


def tagsJson(tags):
    """The one spelling of a tag set: sorted keys, no spaces."""
    return json.dumps(tags, sort_keys=True, separators=(',', ':'))


def splitTags(tags):
    """``(tags without a plain build_number, build)`` of a point's tags (a dict of
    strings)."""
    number = tags.get('build_number')
    if number is not None and number.isdigit() and number.isascii() \
            and (number == '0' or number[0] != '0'):
        rest = dict(tags)
        del rest['build_number']
        return rest, int(number)
    return tags, NO_BUILD


def joinTags(tags, build):
    """The tags of a point from its tag set and ``build`` (the inverse of splitTags)."""
    if build == NO_BUILD:
        return tags
    tags = dict(tags)
    tags['build_number'] = str(build)
    return tags


def valuesJson(values):
    return json.dumps(values, separators=(',', ':'), allow_nan=False)


def splitFields(fields):
    """``(names JSON, values JSON)`` of a point's fields (already checked by
    :mod:`~buildbot_stats.storage.sqlite.values`)."""
    return (json.dumps(list(fields), separators=(',', ':')),
            valuesJson(list(fields.values())))


def joinFields(names, vals):
    """The fields dict of a point: ``names`` a list, ``vals`` the JSON of its values."""
    return dict(zip(names, json.loads(vals)))


class Names:
    """The ids of series names, tag sets and field name lists, cached; new ones are added to
    the store in the transaction that first uses them. One per connection (a rolled-back
    transaction forgets what it added: :meth:`forget`)."""

    def __init__(self):
        self.series, self.tagsets, self.fieldsets = {}, {}, {}
        self._added = False

    def forget(self):
        """After a rollback: an id added in it does not exist."""
        if self._added:
            self.series.clear()
            self.tagsets.clear()
            self.fieldsets.clear()
            self._added = False

    def committed(self):
        self._added = False

    def _id(self, conn, cache, table, column, value, extra=None):
        found = cache.get(value)
        if found is not None:
            return found
        row = conn.execute(f"SELECT id FROM {table} WHERE {column} = ?", (value,)).fetchone()
        if row is None:
            if extra is None:
                cur = conn.execute(f"INSERT INTO {table} ({column}) VALUES (?)", (value,))
            else:
                cur = conn.execute(f"INSERT INTO {table} ({column}, builder) VALUES (?, ?)",
                                   (value, extra))
            self._added = True
            found = cur.lastrowid
        else:
            found = row[0]
        cache[value] = found
        return found

    def seriesId(self, conn, name):
        return self._id(conn, self.series, 'series', 'name', name)

    def tagsetId(self, conn, tags_json, builder):
        return self._id(conn, self.tagsets, 'tagsets', 'tags', tags_json, builder)

    def fieldsetId(self, conn, names_json):
        return self._id(conn, self.fieldsets, 'fieldsets', 'names', names_json)

    def row(self, conn, series, time_us, tags, fields):
        """The ``points`` row of a point (its names interned)."""
        rest, build = splitTags(tags)
        names, vals = splitFields(fields)
        return (self.seriesId(conn, series), time_us,
                self.tagsetId(conn, tagsJson(rest), rest.get('builder_name')), build,
                self.fieldsetId(conn, names), vals)


def loadNames(conn):
    """``(series {id: name}, tagsets {id: tags dict}, fieldsets {id: [names]})`` of a store:
    what a reader needs to decode rows (a few hundred entries)."""
    series = dict(conn.execute("SELECT id, name FROM series"))
    tagsets = {i: json.loads(t) for i, t in conn.execute("SELECT id, tags FROM tagsets")}
    fieldsets = {i: json.loads(n) for i, n in conn.execute("SELECT id, names FROM fieldsets")}
    return series, tagsets, fieldsets
