"""What the page says about the statistics themselves: the series of each InfluxDB
backend's database (a line under the panels), and a warning before them when a database
nears (or has reached) its series limit (docs/scaling.rst). Plain text; the page escapes
it."""

from __future__ import annotations

#: The share of a limit from which the page warns (the backend's series checks agree).
WARN_AT = 0.8

LAYOUT_HINT = ("The seed's captures (build times, properties, yieldMetricsValue data) add "
               "series with every build while build_number is a tag: "
               "StatsService(build_number='field') stops that (see the migration page of the "
               "docs).")


def _share(count, limit):
    return count / limit if count is not None and limit else None


def seriesNotices(metrics, build_number='tag'):
    """The warnings of :meth:`StatsService.metrics() <buildbot_stats.service.StatsService.metrics>`
    (``metrics``) about series limits: one sentence or two per backend concerned;
    ``build_number``: the service's option (the hint is for the tag form only)."""
    out = []
    for name, m in sorted((metrics.get('backends') or {}).items()):
        said = []
        series, limit = m.get('series'), m.get('series_limit')
        share = _share(series, limit)
        if share is not None and share >= WARN_AT:
            said.append(f"the database holds {series:,} series, {share:.0%} of its limit of "
                        f"{limit:,} (InfluxDB's max-series-per-database); past it InfluxDB "
                        "refuses the points of every new series.")
        values, per_tag = m.get('build_number_values'), m.get('values_per_tag_limit')
        share = _share(values, per_tag)
        if share is not None and share >= WARN_AT:
            said.append(f"one measurement holds {values:,} values of the build_number tag, "
                        f"{share:.0%} of InfluxDB's max-values-per-tag ({per_tag:,}).")
        refused = m.get('limit_rejected') or 0
        if refused:
            said.append(f"InfluxDB refused {refused:,} points because a series limit was "
                        "reached (counted in limit_rejected); the master's log names the "
                        "series, the captures and what to do.")
        if said:
            hint = f" {LAYOUT_HINT}" if build_number == 'tag' else ''
            out.append(f"Storage backend {name!r}: " + ' '.join(said) + hint)
    return out


def seriesFacts(metrics):
    """One sentence per backend whose series checks got an answer: its series and limit."""
    out = []
    for name, m in sorted((metrics.get('backends') or {}).items()):
        series, limit = m.get('series'), m.get('series_limit')
        if series is None:
            continue
        if limit:
            of = f" of its limit of {limit:,} ({series / limit:.0%})"
        elif limit == 0:
            of = " (no series limit)"
        else:
            of = " (its limit unknown)"
        out.append(f"The database of {name!r} holds {series:,} series{of}, checked hourly.")
    return out
