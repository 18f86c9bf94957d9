"""Rollups inside InfluxDB 1.x: continuous queries that keep, per hour and per day, what the
Statistics page reads (counts, sums, minimums, maximums, and the 5th to 95th percentiles
in steps of 5 of the quantities shown as medians and 90th percentiles), per hour, day and
week, in retention policies of their own, :data:`HOURLY`, :data:`DAILY` and :data:`WEEKLY`
(docs/storage-influxdb.rst, "Retention policies and continuous queries").

``buildbot-stats influxdb-rollups --influxdb URL --db NAME`` creates them (and with
``--backfill`` computes them for the points already stored); the page's reader
(:class:`~buildbot_stats.reading.influxdb.InfluxReader`) uses them when they exist, for the
whole hours and days of a range that they cover.
"""

from __future__ import annotations

#: The retention policies of the rollups (each ``DURATION INF`` unless the user changes it).
HOURLY, DAILY, WEEKLY = 'rollups_1h', 'rollups_1d', 'rollups_1w'
#: ``(policy, period, resample every, resample for)``: a continuous query recomputes the
#: periods of the last ``for`` every ``every``, so that points a little late count. InfluxDB
#: starts weeks on multiples of 7 days since the epoch, as the embedded store does.
LEVELS = ((HOURLY, '1h', '10m', '2h'), (DAILY, '1d', '1h', '2d'), (WEEKLY, '7d', '1d', '14d'))
#: The shard group duration of each policy. InfluxDB's default for a policy kept for ever is
#: 7 days: a year of weekly rows would be 52 shards of one row per series, and a query
#: opens every shard of its range (measured: the page's weekly queries over a year 3 times
#: slower). A shard holds a few hundred thousand rows at most with these.
SHARDS = {HOURLY: '4w', DAILY: '52w', WEEKLY: '520w'}
WEEK = 7 * 86400
#: How long after its end a period is final in the rollups (the hourly resampling window).
SETTLED = 2 * 3600
#: The percentiles kept of a quantity.
PERCENTILES = tuple(range(5, 100, 5))


def quoteIdent(name):
    return '"' + name.replace('\\', '\\\\').replace('"', '\\"') + '"'


def _stats(field, percentiles):
    f = quoteIdent(field)
    out = [f'count({f}) AS {quoteIdent(field + "_count")}',
           f'sum({f}) AS {quoteIdent(field + "_sum")}',
           f'min({f}) AS {quoteIdent(field + "_min")}',
           f'max({f}) AS {quoteIdent(field + "_max")}']
    if percentiles:
        out += [f'percentile({f}, {p}) AS {quoteIdent(f"{field}_p{p:02d}")}'
                for p in PERCENTILES]
    return ", ".join(out)


#: ``name: (SELECT list, FROM, WHERE or None, GROUP BY tags)``: the queries of the rollups.
QUERIES = {
    'durations': (_stats('duration', True), '/-build-times$/', None, ('builder_name',)),
    'queue': (_stats('queue_time', True), '"build_requests"', None, ('builder_name',)),
    # hidden: the steps hideStepIf hides (a tag), left out by the reader as its raw points
    'steps': (_stats('duration', True), '"steps"', None, ('builder_name', 'step_name',
                                                          'hidden')),
    'results': ('count("result_code") AS "points"', '"builds"', None,
                ('builder_name', 'result')),
    'tests': (", ".join(_stats(f, False) for f in ('passed', 'failed', 'skipped')), '"tests"',
              None, ('builder_name',)),
    'tests_failed': ('count("failed") AS "failed_nonzero"', '"tests"', '"failed" > 0',
                     ('builder_name',)),
    # every other series: its numeric fields (wildcards: count_<field>, median_<field>...)
    'custom': ('count(*), sum(*), min(*), max(*), median(*)', None, None, ('builder_name',)),
}


def notOneOf(names):
    """An InfluxQL regex (``/.../``) matching every measurement name but ``names``.

    InfluxDB's regexes are Go's (RE2): no lookahead, so no ``/^(?!steps$)/``. A name that is
    not one of a finite set either ends where no name does, or goes on with a character no
    name has at that place, or goes on along a name and differs later: one alternative per
    node of the names' trie."""
    trie = {}
    for name in names:
        node = trie
        for c in name:
            node = node.setdefault(c, {})
        node[None] = {}

    def char(c):
        return c if c.isalnum() or c in '_/' else '\\' + c

    def rest(node):
        # every ending (relative to this node) of a name that is not one of the names
        children = sorted(c for c in node if c is not None)
        alts = [''] if None not in node else []
        if children:
            alts.append('[^' + ''.join(char(c) for c in children) + '].*')
        else:
            alts.append('.+')
        alts += [char(c) + '(?:' + rest(node[c]) + ')' for c in children]
        return '|'.join(alts)

    return '/(?s)^(?:' + rest(trie).replace('/', '\\/') + ')$/'


#: The measurements the custom series' rollup leaves out: those rolled up by a query of
#: their own, the change points and the per-test history (``test_cases`` would be most of
#: the work: a point per test per build), none of which the reader reads as custom series.
#: (The ``<builder>-build-times`` measurements are not left out: a suffix cannot be, without
#: lookahead, in a regex that stays readable; their custom rows are small and unread.)
CUSTOM_EXCLUDED = ('builds', 'build_requests', 'steps', 'tests', 'change_points',
                   'test_cases', 'test_runs')
QUERIES['custom'] = QUERIES['custom'][:1] + (notOneOf(CUSTOM_EXCLUDED),) + QUERIES['custom'][2:]


def rollupColumns(kind, fields, percentiles=PERCENTILES):
    """The columns of a kind's rollup rows (``kind``: a :class:`~buildbot_stats.reading.kinds.Kind`
    name and its fields); ``percentiles``: those to read (a period of one row needs its
    median and 90th percentile only)."""
    name = getattr(kind, 'name', kind)
    if name == 'results':
        return ['points']
    if name == 'custom':
        return [f"{k}_{f}" for f in fields for k in ('count', 'sum', 'min', 'max', 'median')]
    columns = [f"{f}_{k}" for f in fields for k in ('count', 'sum', 'min', 'max')]
    if name == 'tests':
        return columns + ['failed_nonzero']
    return columns + [f"{f}_p{p:02d}" for f in fields for p in percentiles]


def select(db, policy, period, name, where=None):
    """The ``SELECT ... INTO`` of the rollup ``name`` at ``period`` (``'1h'``, ``'1d'``),
    with an extra time condition ``where`` (a backfill's) or none (a continuous query's)."""
    columns, source, condition, tags = QUERIES[name]
    conditions = [c for c in (condition, where) if c]
    return (f"SELECT {columns} INTO {quoteIdent(db)}.{quoteIdent(policy)}.:MEASUREMENT"
            f" FROM {source}" + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
            + f" GROUP BY time({period}), {', '.join(quoteIdent(t) for t in tags)}")


def statements(db, replication=1):
    """Everything ``influxdb-rollups`` runs, in order: the retention policies, then the
    continuous queries (each dropped first: running it again updates them)."""
    out = []
    for policy, period, every, span in LEVELS:
        out.append(f"CREATE RETENTION POLICY {quoteIdent(policy)} ON {quoteIdent(db)}"
                   f" DURATION INF REPLICATION {int(replication)}"
                   f" SHARD DURATION {SHARDS[policy]}")
        for name in QUERIES:
            cq = quoteIdent(f"buildbot_stats_{name}_{period}")
            out.append(f"DROP CONTINUOUS QUERY {cq} ON {quoteIdent(db)}")
            out.append(f"CREATE CONTINUOUS QUERY {cq} ON {quoteIdent(db)}"
                       f" RESAMPLE EVERY {every} FOR {span} BEGIN"
                       f" {select(db, policy, period, name)} END")
    return out


def alterShards(db, policy):
    """The statement that gives an existing rollup policy its shard duration (for the
    shard groups created from then on; the user's ``DURATION`` is kept)."""
    return (f"ALTER RETENTION POLICY {quoteIdent(policy)} ON {quoteIdent(db)}"
            f" SHARD DURATION {SHARDS[policy]}")


def reshard(db, start, end, chunk=52 * WEEK):
    """The statements that move the rows of rollup policies made before :data:`SHARDS`
    (7-day shards) into shards of the new duration: each policy's rows copied into a
    temporary policy, the policy dropped and created again, the rows copied back
    (``start``, ``end``: the seconds its rows span; a chunk of ``chunk`` seconds per
    ``SELECT ... INTO``). The continuous queries keep running meanwhile: a period they
    write into during the copy is written again by their next run."""
    out = []
    t0, end = int(start // WEEK * WEEK), int(-(-end // 1))
    for policy, _, _, _ in LEVELS:
        tmp = f"{policy}_resharding"
        rp, tq = quoteIdent(policy), quoteIdent(tmp)
        out.append(f"CREATE RETENTION POLICY {tq} ON {quoteIdent(db)} DURATION INF"
                   f" REPLICATION 1 SHARD DURATION {SHARDS[policy]}")

        def copy(src, dst):
            t = t0
            while t < end:
                hi = min(t + chunk, end)
                out.append(f"SELECT * INTO {quoteIdent(db)}.{dst}.:MEASUREMENT FROM"
                           f" {quoteIdent(db)}.{src}./.*/ WHERE time >= {t}s AND"
                           f" time < {hi}s GROUP BY *")
                t = hi
        copy(rp, tq)
        out.append(f"DROP RETENTION POLICY {rp} ON {quoteIdent(db)}")
        out.append(f"CREATE RETENTION POLICY {rp} ON {quoteIdent(db)} DURATION INF"
                   f" REPLICATION 1 SHARD DURATION {SHARDS[policy]}")
        copy(tq, rp)
        out.append(f"DROP RETENTION POLICY {tq} ON {quoteIdent(db)}")
    return out


def backfill(db, start, end, chunk=WEEK):
    """The ``SELECT ... INTO`` statements that compute the rollups of ``[start, end)``
    (seconds), a week of time each (InfluxDB holds one chunk's points in memory; chunks
    start on InfluxDB's weeks, so that no week is computed from part of its points)."""
    out = []
    t, end = int(start // WEEK * WEEK), int(-(-end // 1))
    while t < end:
        hi = min(t + chunk, end)
        where = f"time >= {t}s AND time < {hi}s"
        for policy, period, _, _ in LEVELS:
            for name in QUERIES:
                out.append(select(db, policy, period, name, where))
        t = hi
    return out
