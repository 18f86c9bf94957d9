"""Tags: extra tags, the cardinality guard, and where the seed's captures put the build number.

InfluxDB keeps an index entry per distinct tag value; a tag fed with unbounded values
(build numbers, commit hashes, one branch per pull request) grows that index without end
and finally gets writes refused. The captures of :mod:`buildbot_stats.captures.buildstats`
therefore write unbounded numbers as fields, and every tag they write passes through
:class:`TagPolicy`, which turns a tag into a field once it has seen too many values.

The seed's captures (build times, properties, ``yieldMetricsValue`` data) tag
``build_number`` as Buildbot's module does: a new series per build. With
``StatsService(build_number='field')`` (:data:`BUILD_NUMBER_FORMS`) :meth:`TagPolicy.seedPoint`
writes it as an integer field instead, and their other tags pass the cardinality guard too,
so each builder keeps a fixed number of series (docs/scaling.rst).
"""

from __future__ import annotations

from twisted.python import log

from buildbot import config

from buildbot_stats.checks import countProblem
from buildbot_stats.checks import report
from buildbot_stats.checks import shown

#: Default of ``StatsService(max_tag_values=...)``: distinct values one tag of one
#: measurement may take before it is written as a field instead.
DEFAULT_MAX_TAG_VALUES = 1000

#: ``StatsService(build_number=...)``: the seed's captures write the build number as a tag
#: (Buildbot's layout, the default) or as a field.
BUILD_NUMBER_FORMS = ('tag', 'field')

#: Tag names the captures write themselves; ``extra_tags`` may not use them.
RESERVED_TAGS = frozenset({
    'builder_name', 'build_number', 'worker', 'result', 'branch', 'repository', 'project',
    'step_name',
})


def checkTagOptions(owner, extra_tags, max_tag_values, build_number='tag'):
    """``config.error`` for a bad ``extra_tags``, ``max_tag_values`` or ``build_number``
    (checkConfig)."""
    if build_number not in BUILD_NUMBER_FORMS or not isinstance(build_number, str):
        config.error(f"{owner}: build_number must be 'tag' (Buildbot's layout: a new series "
                     "per build) or 'field', got " + shown(build_number))
    if extra_tags is not None:
        if not isinstance(extra_tags, dict):
            config.error(f"{owner}: extra_tags must be a dict of tag names to strings, got "
                         f"{shown(extra_tags)}")
        else:
            for key, value in extra_tags.items():
                if not isinstance(key, str) or not key:
                    config.error(f"{owner}: extra_tags: tag name {key!r} must be a non-empty "
                                 "string")
                elif key in RESERVED_TAGS:
                    config.error(f"{owner}: extra_tags: {key!r} is a tag the captures write "
                                 f"themselves; pick another name (reserved: "
                                 f"{', '.join(sorted(RESERVED_TAGS))})")
                if not isinstance(value, str) or not value:
                    config.error(f"{owner}: extra_tags: the value of {key!r} must be a "
                                 f"non-empty string, got {shown(value)}")
    report(owner, countProblem('max_tag_values', max_tag_values, none_means="no limit"))


class TagPolicy:
    """Adds the extra tags to every point, keeps the build statistics' tags bounded, and
    says where the seed's captures put the build number.

    :param extra_tags: tags added to every point (a capture's own tag of the same name wins)
    :param max_tag_values: distinct values a tag of one measurement may take; the value that
        would pass the limit, and every later value, is written as a field of the same name
        (one warning logged per measurement and tag). ``None``: no limit.
    :param build_number: ``'tag'`` or ``'field'``: where :meth:`seedPoint` puts the seed's
        build number (``StatsService(build_number=...)``)
    """

    def __init__(self, extra_tags=None, max_tag_values=DEFAULT_MAX_TAG_VALUES,
                 build_number='tag'):
        self.extra_tags = {}
        self.max_tag_values = max_tag_values
        self.build_number = build_number
        # (measurement, tag) -> the distinct values written as a tag so far
        self._seen = {}
        # (measurement, tag) pairs now written as fields
        self.demoted = set()
        self.configure(extra_tags, max_tag_values, build_number)

    def configure(self, extra_tags, max_tag_values, build_number='tag'):
        self.extra_tags = dict(extra_tags or {})
        if max_tag_values != self.max_tag_values:
            # a new limit is a new decision: tags demoted under the old one may come back
            self.demoted.clear()
        self.max_tag_values = max_tag_values
        self.build_number = build_number

    @property
    def buildNumberIsField(self):
        return self.build_number == 'field'

    def seedPoint(self, measurement, tags, fields):
        """The (tags, fields) of a point of the seed's layout (``builder_name`` and
        ``build_number`` tags): unchanged in the tag form; in the field form the build
        number is an integer field and the other tags pass :meth:`apply` (the guard)."""
        if not self.buildNumberIsField or 'build_number' not in tags:
            return tags, fields
        tags = dict(tags)
        number = tags.pop('build_number')
        fields = dict(fields)
        try:
            fields['build_number'] = int(number)
        except (TypeError, ValueError):
            fields['build_number'] = str(number)
        return self.apply(measurement, tags, fields)

    def addExtraTags(self, tags):
        """``tags`` with the extra tags added. A given tag wins over an extra tag of the same
        name, unless its value is ``None`` or empty (unknown: the extra tag fills it)."""
        if not self.extra_tags:
            return tags
        merged = dict(self.extra_tags)
        if tags:
            for key, value in tags.items():
                if value is None or value == '':
                    if key in merged:
                        continue
                merged[key] = value
        return merged

    def apply(self, measurement, tags, fields):
        """The (tags, fields) to write: empty tags dropped, tags past the limit as fields."""
        out_tags = {}
        out_fields = dict(fields)
        for key, value in tags.items():
            if value is None or value == '':
                # InfluxDB refuses empty tag values; a missing tag means "unknown"
                continue
            value = str(value)
            if self._keepAsTag(measurement, key, value):
                out_tags[key] = value
            else:
                out_fields.setdefault(key, value)
        return out_tags, out_fields

    def _keepAsTag(self, measurement, key, value):
        pair = (measurement, key)
        if pair in self.demoted:
            return False
        seen = self._seen.setdefault(pair, set())
        if value in seen:
            return True
        if self.max_tag_values is not None and len(seen) >= self.max_tag_values:
            self.demoted.add(pair)
            log.msg(
                f"buildbot_stats: warning: tag {key!r} of measurement {measurement!r} passed "
                f"{self.max_tag_values} distinct values (new value {value!r}); it is written as "
                f"a field from now on. Raise StatsService(max_tag_values=...) to keep it a tag."
            )
            return False
        seen.add(value)
        return True
