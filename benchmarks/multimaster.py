"""What the statistics cost each master of a multi-master site, per build.

The tests' two-master site (``tests/multimaster.py``: PostgreSQL 15, a crossbar router,
two masters with their own PB worker each, the ``examples/multimaster`` configuration
writing to InfluxDB 1.x and to each master's SQLite store). Rounds of ``--n`` builds of the
``app`` builder (13 points per build) all run on master A; between rounds both masters are
reconfigured with or without their StatsService (``stats`` / ``none``), alternately, so that
the machine's load drifts over both variants alike.

Per round it reports, from ``/proc``: master A's CPU seconds per build (it runs the builds
and writes their points), master B's CPU seconds per build (it receives every message of A
through the MQ and drops the builds that are not its own), each master's resident memory
after the round, and for ``stats`` the points per second written (every point of the round
found in InfluxDB). Prints ONE JSON line.

Usage: ``python benchmarks/multimaster.py --n 40 --rounds 2``. Needs what the tests need
(``scripts/setup-crossbar.sh``, Debian's postgresql and influxdb).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks import harness  # noqa: E402

# the 'none' variant: no StatsService, and no step calling yieldMetricsValue (the last one)
NO_STATS = """
c['services'] = []
c['builders'][0].factory.steps = c['builders'][0].factory.steps[:-1]
"""
PER_BUILD = 13


def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads), from /proc."""
    with open(f'/proc/{pid}/stat', encoding='ascii') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    ticks = os.sysconf('SC_CLK_TCK')
    return (int(fields[11]) + int(fields[12])) / ticks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--n', type=int, default=40, help='builds per round (default 40)')
    parser.add_argument('--rounds', type=int, default=2,
                        help='rounds of each variant, alternating (default 2)')
    parser.add_argument('--window', type=int, default=8,
                        help='builds requested and unfinished at most (default 8)')
    args = parser.parse_args(argv)

    import tests  # noqa: F401  (the warning filters of the test suite)
    from tests.multimaster import MultiMaster
    from tests.multimaster import missing
    from tests.servers import InfluxDB1Server

    why = missing()
    if why:
        sys.exit(f'multimaster.py: {why}')
    influx = InfluxDB1Server.start_new()
    influx.create_database('buildbot')
    site = MultiMaster(influx)
    rounds = []
    try:
        site.start()
        a, b = site.masters['master-a'], site.masters['master-b']
        builderid = {x['name']: x['builderid'] for x in a.get('builders')['builders']}['app']
        texts = {}
        for m in (a, b):
            with open(m.cfg_path, encoding='utf-8') as f:
                texts[m] = f.read()

        def count_points():
            answer = influx.query('SELECT COUNT("result_code") FROM "builds"', db='buildbot')
            series = answer['results'][0].get('series')
            return series[0]['values'][0][1] if series else 0

        def run_round(variant):
            for m in (a, b):
                site.writeConfig(m, texts[m] + (NO_STATS if variant == 'none' else ''))
                m.reconfig()
            before_points = count_points()
            cpu0 = {m: cpu_seconds(m.process.pid) for m in (a, b)}
            t0 = time.monotonic()
            pending, done = [], 0
            submitted = 0
            while done < args.n:
                while submitted < args.n and len(pending) < args.window:
                    bsid, _ = a.rpc('forceschedulers/force', 'force', builderid=str(builderid),
                                    workername='worker-a')
                    pending.append(bsid)
                    submitted += 1
                still = []
                for bsid in pending:
                    reqs = a.get(f'buildrequests?buildsetid={bsid}')['buildrequests']
                    if reqs and reqs[0]['complete']:
                        done += 1
                    else:
                        still.append(bsid)
                pending = still
                time.sleep(0.05)
            wall_builds = time.monotonic() - t0
            if variant == 'stats':
                deadline = time.monotonic() + 60
                while count_points() < before_points + args.n and time.monotonic() < deadline:
                    time.sleep(0.1)
            wall = time.monotonic() - t0
            cpu = {m: cpu_seconds(m.process.pid) - cpu0[m] for m in (a, b)}
            result = {
                'variant': variant,
                'builds': args.n,
                'wall_s': wall,
                'builds_per_min': args.n / wall_builds * 60,
                'a_cpu_per_build_ms': cpu[a] / args.n * 1000,
                'b_cpu_per_build_ms': cpu[b] / args.n * 1000,
                'a_rss_mb': harness.rss_mb(a.process.pid),
                'b_rss_mb': harness.rss_mb(b.process.pid),
            }
            if variant == 'stats':
                result['points_written'] = (count_points() - before_points) * PER_BUILD
                result['points_per_s'] = result['points_written'] / wall
            return result

        # a warm-up round: the first builds import code and fill caches
        run_round('stats')
        for _ in range(args.rounds):
            for variant in ('none', 'stats'):
                rounds.append(run_round(variant))
    finally:
        site.cleanup()
        influx.cleanup()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    harness.emit({'benchmark': 'multimaster', 'n': args.n, 'rounds': rounds,
                  'loadavg': load, 'machine': harness.machine()})


if __name__ == '__main__':
    main()
