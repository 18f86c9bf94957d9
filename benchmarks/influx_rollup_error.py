"""How far the medians and 90th percentiles that :class:`InfluxReader` computes from
InfluxDB's rollups are from the exact ones, at every hour of the day.

``python benchmarks/influx_rollup_error.py`` starts InfluxDB 1.x (the tests' fixture: a free
loopback port, a temporary data directory) and, for each of the 24 hours of the day, writes
the data of ``tests/test_influxdb_rollups.py`` (:mod:`benchmarks.storegen`, 9 days of 1,800
builds ending 3 hours before that hour), sets up the rollups (``buildbot-stats
influxdb-rollups --backfill``) and compares ``summarizeRollups`` with ``summarizeRaw`` over
the test's range (the 7 days before that hour, less 1,234 s: whole days from the daily
rows, the edges from hourly rows and raw points) for the build and step durations. The data is the same
every run (seed 1); where the days and hours cut it depends on the hour of the day only,
so these 24 runs are every case the test can meet.

Prints ONE JSON line: per hour, the largest relative error (%) and where it is, and the
largest rank error (percentage points: how far the estimate's rank among the exact values is
from 50 or 90); and the largest and the mean over all hours. ``--hours 0 3`` measures
hours 0-2 only.
"""

from __future__ import annotations

import argparse
import bisect
import io
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import harness  # noqa: E402
from benchmarks import storegen  # noqa: E402


def rawValues(reader, kind_name, start, end):
    """``{group: sorted values}`` of a kind's field over ``[start, end)``, as
    ``summarizeRaw`` groups them."""
    from buildbot_stats.reading import influxdb
    kind = influxdb.KINDS[kind_name]
    tags = ('builder_name',) + influxdb.GROUP_TAGS[kind.name]
    out = {}
    for m, fields in reader._kindMeasurements(kind, None).items():
        where = reader._where(None, start, end, influxdb.KIND_CONDITIONS.get(kind.name, ()))
        for f in fields:
            q = (f"SELECT {influxdb.quoteIdent(f)} FROM {reader._from(m)}{where}"
                 f" GROUP BY {', '.join(influxdb.quoteIdent(t) for t in tags)}")
            for series in reader.query(q):
                key = kind.group(m, series.get('tags') or {}, f, True)
                out.setdefault(key, []).extend(
                    v[1] for v in series['values'] if v[1] is not None)
    return {k: sorted(v) for k, v in out.items()}


def rankError(ordered, estimate, p):
    """How far (in percentage points of rank) ``estimate`` is from being the ``p``-th
    percentile of ``ordered``: 0 when some rank it takes is within ``p``."""
    below = bisect.bisect_left(ordered, estimate) / len(ordered) * 100
    upto = bisect.bisect_right(ordered, estimate) / len(ordered) * 100
    return 0.0 if below <= p <= upto else min(abs(below - p), abs(upto - p))


def errors(reader, start, end):
    """``[(relative error, rank error, statistic, kind, group)]`` over ``[start, end)``."""
    out = []
    for kind in ('durations', 'steps'):
        got = reader.summarizeRollups(kind, None, start, end)
        values = rawValues(reader, kind, start, end)
        for group, exact in reader.summarizeRaw(kind, None, start, end).items():
            for name, p in (('median', 50), ('p90', 90)):
                estimate, truth = getattr(got[group], name), getattr(exact, name)
                out.append((abs(estimate - truth) / truth,
                            rankError(values[group], estimate, p), name, kind, group))
    return out


def main(argv=None):
    from buildbot_stats.cli import main as cli_main
    from buildbot_stats.reading.influxdb import InfluxReader

    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--hours', type=int, nargs=2, default=(0, 24), metavar=('FROM', 'TO'))
    args = p.parse_args(argv)
    server = harness.servers_module().InfluxDB1Server()
    server.start()
    hours, every = {}, []
    try:
        for hour in range(*args.hours):
            now = (time.time() // 86400 - 1) * 86400 + hour * 3600
            db = f"hour{hour}"
            storegen.loadInflux(server.url, db, 9 * 1800, 9, now - 3 * 3600)
            out = io.StringIO()
            status = cli_main.main(['influxdb-rollups', '--influxdb', server.url, '--db', db,
                                    '--backfill'], out=out)
            if status:
                raise SystemExit(out.getvalue())
            found = errors(InfluxReader(server.url, db, timeout=60), now - 7 * 86400 + 1234,
                           now)
            every += [e[0] for e in found]
            worst = max(found)
            hours[hour] = {'max_pct': round(worst[0] * 100, 2), 'at': list(worst[2:4]) + [
                worst[4]], 'max_rank_error': round(max(e[1] for e in found), 2)}
    finally:
        server.stop()
    print(json.dumps({'hours': hours,
                      'max_pct': max(h['max_pct'] for h in hours.values()),
                      'max_rank_error': max(h['max_rank_error'] for h in hours.values()),
                      'mean_pct': round(100 * sum(every) / len(every), 3)}))


if __name__ == '__main__':
    main()
