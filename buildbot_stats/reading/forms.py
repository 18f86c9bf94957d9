"""The two forms of a point of the seed's captures, for every reader.

Buildbot's layout (the default) tags ``build_number``: a new series per build in InfluxDB.
Under ``StatsService(build_number='field')`` it is an integer field instead (docs/migration.rst).
One store may hold both: the points written before the switch in one form, those after it in
the other. A build may even be in both forms: the catch-up at the start after the switch, or
a backfill of builds written before it, writes them again in the new form, at a time a few
milliseconds apart (:mod:`buildbot_stats.timestamps`), so the new points do not replace the
old ones. Readers then keep one form per build: the tag form, which was there first.

How each reader finds a point's build in either form stays with the reader
(``buildOf`` in :mod:`~buildbot_stats.reading.influxdb`; the embedded store has a column of
it); what they share is here.
"""

from __future__ import annotations

#: The field that says which build a point is of: never a statistic to chart.
BUILD_NUMBER = 'build_number'


def isStatistic(field):
    """False for the fields that only say which build a point is of."""
    return field != BUILD_NUMBER


def oneFormPerBuild(items, key, tagged):
    """``items`` (in their order) without those of a build also present in the tag form:
    ``key(item)`` names the build (series, builder, build number; None: no build, kept),
    ``tagged(item)`` says whether the item is of the tag form."""
    items = list(items)
    in_tag_form = {key(i) for i in items if tagged(i)}
    if not in_tag_form:
        return items
    return [i for i in items if tagged(i) or key(i) is None or key(i) not in in_tag_form]
