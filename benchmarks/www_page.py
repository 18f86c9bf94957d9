"""The Statistics page's server time and memory on a large store, and ``buildbot-stats report``'s,
for each range and for all builders or one, on the embedded store and on InfluxDB.

``python benchmarks/www_page.py --points 100000`` builds a store of that many points with
:mod:`benchmarks.storegen` (``--store FILE --now T``: use one it wrote, e.g. 10,000,000
points), then, for each view (all builders or one; 24h, 7d, 30d, all), in a fresh process
each (the first view after a start: nothing cached, the reader opened for the request), times
``page.view`` (``collect`` + ``Page.render``: what the ``view`` route does between the authz
check and the answer) and measures the memory it takes (``tracemalloc``'s peak of Python's
allocations, plus SQLite's page cache: ``rss_growth_mb``, the process's peak resident memory
minus its size before the view). Then the same view again in that process, and the view
served from the page's :class:`ViewCache`. ``--influxdb-dir DIR`` also times the views on
the InfluxDB 1.x database ``bench`` kept in DIR (started for the run; see
``benchmarks/storegen.py --influxdb``). ``--report`` times ``buildbot-stats report`` on the
store (a fresh process: its wall time and peak memory). Prints ONE JSON line.

Targets (issue 19): every view <= 200 ms on 10,000,000 points in SQLite, <= 300 ms in
InfluxDB 1.6; the page's memory <= 64 MB; the report <= 3 s and <= 150 MB.
Not included: the two hops to the reactor per request (authz, builder ids), a few ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import harness  # noqa: E402
from benchmarks import storegen  # noqa: E402

BUILDERS = storegen.BUILDERS
RANGES = ('24h', '7d', '30d', 'all')


def rssMb():
    with open('/proc/self/status', encoding='ascii') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return 0.0


def hwmMb():
    with open('/proc/self/status', encoding='ascii') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return 0.0


def openReader(source):
    if source['kind'] == 'sqlite':
        from buildbot_stats.reading.sqlite import openStore

        return openStore(source['path'])
    from buildbot_stats.reading.influxdb import InfluxReader

    return InfluxReader(source['url'], source['db'], timeout=300)


def child(source, builder, range_name, now, repeat):
    """One view in this fresh process: first, again, from the cache."""
    import tracemalloc

    # what the master has imported before its first view
    import buildbot_stats.reading.influxdb  # noqa: F401
    import buildbot_stats.reading.sqlite  # noqa: F401
    from buildbot_stats.www import page
    from buildbot_stats.www.cache import ViewCache
    from buildbot_stats.www.ranges import timeWindow

    ids = {b: n + 1 for n, b in enumerate(BUILDERS)}
    start, end = timeWindow(range_name, now)
    base_rss = rssMb()
    cache = ViewCache()

    def once(cache):
        t0, c0 = time.perf_counter(), time.process_time()
        with openReader(source) as reader:
            html = page.view(reader, builder, range_name, start, end, ids, '../../../', None,
                             'store', now, cache=cache)
        return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000, html

    first_ms, first_cpu, html = once(cache)
    growth = hwmMb() - base_rss
    again = [once(None)[:2] for _ in range(repeat)]
    cached = once(cache)[0]
    # Python's allocations of one view (tracemalloc slows it down: not timed)
    tracemalloc.start()
    once(None)
    traced_peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return {'first_ms': first_ms, 'first_cpu_ms': first_cpu,
            'again_median_ms': statistics.median(a[0] for a in again),
            'again_cpu_median_ms': statistics.median(a[1] for a in again),
            'cached_ms': cached, 'traced_peak_mb': traced_peak, 'rss_growth_mb': growth,
            'html_bytes': len(html), 'marks': html.count('<circle')}


def runChild(source, builder, range_name, now, repeat):
    res = subprocess.run([sys.executable, __file__, '--child', json.dumps(
        {'source': source, 'builder': builder, 'range': range_name, 'now': now,
         'repeat': repeat})], capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def views(source, now, repeat):
    out = {}
    for builder in (None, BUILDERS[0]):
        for range_name in RANGES:
            key = f"{builder or 'all builders'} {range_name}"
            out[key] = runChild(source, builder, range_name, now, repeat)
    worst = max(v['first_ms'] for v in out.values())
    return {'views': out, 'worst_first_ms': worst,
            'worst_again_ms': max(v['again_median_ms'] for v in out.values()),
            'worst_traced_peak_mb': max(v['traced_peak_mb'] for v in out.values()),
            'worst_rss_growth_mb': max(v['rss_growth_mb'] for v in out.values())}


# the command as a user runs it, then its peak resident memory on stderr
REPORT = ("import sys\nfrom buildbot_stats.cli.main import main\nstatus = main(sys.argv[1:])\n"
          "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
          "sys.stderr.write('HWM ' + hwm.split()[1] + '\\n')\nsys.exit(status)\n")


def timeReport(path):
    """``buildbot-stats report`` on the store in a fresh process: wall time (imports
    included), peak memory."""
    out = {}
    for args, key in ((['--no-html'], 'terminal'), ([], 'html')):
        html = os.path.join(tempfile.mkdtemp(), 'report.html')
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, '-c', REPORT, 'report', path, '--html', html,
                              *args], capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - t0
        if res.returncode:
            raise RuntimeError(res.stderr)
        hwm = [line for line in res.stderr.splitlines() if line.startswith('HWM ')]
        out[key] = {'seconds': seconds,
                    'peak_rss_mb': int(hwm[0].split()[1]) / 1024 if hwm else None,
                    'html_bytes': os.path.getsize(html) if not args else 0,
                    'lines': len(res.stdout.splitlines())}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--points', type=int, default=100_000, help='points (default 100,000)')
    p.add_argument('--days', type=int, default=30, help='days of builds (default 30)')
    p.add_argument('--store', help="a store written by benchmarks/storegen.py")
    p.add_argument('--now', type=float, help="the store's time (storegen's --now), or the "
                   "time of the generated store and of the InfluxDB data (default: now)")
    p.add_argument('--influxdb-dir', help="an InfluxDB data directory with db bench")
    p.add_argument('--repeat', type=int, default=3, help='views again per view (default 3)')
    p.add_argument('--report', action='store_true', help="also time buildbot-stats report")
    p.add_argument('--through-writer', action='store_true',
                   help="write the generated store as the master does (its writer, its timer "
                   "rounds: quiet days rolled up to day rows only) instead of by direct SQL")
    p.add_argument('--child', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        c = json.loads(args.child)
        print(json.dumps(child(c['source'], c['builder'], c['range'], c['now'], c['repeat'])))
        return
    out = {'bench': 'www_page'}
    tmp = None
    if args.store:
        path, now = args.store, args.now
        from buildbot_stats.reading.sqlite import openStore

        with openStore(path) as reader:
            out['points'] = reader.countPoints()
    else:
        tmp = tempfile.mkdtemp()
        path = os.path.join(tmp, 'stats.sqlite')
        now = args.now or time.time() // 3600 * 3600
        out['points'], out['rollup_s'] = storegen.fillStore(
            path, args.points, args.days, now, through_writer=args.through_writer)
        out['through_writer'] = args.through_writer
    out['store_bytes_per_point'] = os.path.getsize(path) / max(1, out['points'])
    out['sqlite'] = views({'kind': 'sqlite', 'path': path}, now, args.repeat)
    out['sqlite']['target_ms'] = 200
    if args.report:
        out['report'] = timeReport(path)
    if args.influxdb_dir:
        server = harness.servers_module().InfluxDB1Server(basedir=args.influxdb_dir)
        server.start()
        try:
            out['influxdb'] = views({'kind': 'influx', 'url': server.url, 'db': 'bench'}, now,
                                    args.repeat)
            out['influxdb']['target_ms'] = 300
        finally:
            server.stop()
    out['load'] = os.getloadavg()
    out['machine'] = harness.machine()
    print(json.dumps(harness.r(out)))


if __name__ == '__main__':
    main()
