"""How long ``buildbot-stats`` takes to end after Ctrl-C or SIGTERM (the target: 1 s).

Each scenario starts the installed command, waits until it is where a signal hurts most (a
store open and being read, an output's temporary file written, the master's database locked
by another program, a demo build running), sends the signal and measures the seconds from
the signal to the process's end (``wait``). ``--n`` runs of each; one JSON line with, per
scenario, the least, median and largest seconds, the exit statuses, and the machine's load
average before and after (the latency of a loaded machine is the figure that counts).

    python benchmarks/interrupt.py --n 5 [--scenarios report,export-file,export-pipe,backfill,demo]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.harness import machine  # noqa: E402
from benchmarks.harness import r  # noqa: E402
from tests.test_cli_bad_input import masterCfg  # noqa: E402
from tests.test_cli_bad_input import writeStore  # noqa: E402

SCENARIOS = ('report', 'export-file', 'export-pipe', 'backfill', 'demo')
T0 = 1_700_000_000.0
def command():
    script = os.path.join(os.path.dirname(sys.executable), 'buildbot-stats')
    return [script] if os.path.exists(script) else [sys.executable, '-m',
                                                    'buildbot_stats.cli.main']


def bigStore(path, points):
    writeStore(path, [(f"s{i % 4}", {'builder_name': 'alpha', 'build_number': str(i)},
                       {'v': float(i), 'text': 'x' * 40}, T0 + i) for i in range(points)])


def masterWithDatabase(basedir):
    os.makedirs(basedir)
    with open(os.path.join(basedir, 'master.cfg'), 'w') as f:
        f.write(masterCfg("c['services'] = [stats.StatsService()]\n"))
    script = ("import sys\nfrom twisted.internet import defer, task\n"
              "from buildbot_stats.cli.demo import upgradeDb\n"
              "task.react(lambda r: defer.ensureDeferred(upgradeDb(sys.argv[1])))\n")
    subprocess.run([sys.executable, '-c', script, basedir], check=True, capture_output=True,
                   timeout=300)


def openFiles(pid):
    out = []
    for fd in glob.glob(f'/proc/{pid}/fd/*'):
        try:
            out.append(os.readlink(fd))
        except OSError:
            pass
    return out


def waitUntil(proc, condition, deadline=300.0):
    end = time.monotonic() + deadline
    while not condition():
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"the command ended or took too long (status {proc.poll()})")
        time.sleep(0.01)


def measure(proc, signum):
    proc.send_signal(signum)
    sent = time.monotonic()
    proc.wait(timeout=300)
    took = time.monotonic() - sent
    proc.stdout.close()
    proc.stderr.close()
    return took, proc.returncode


def start(args, **kwargs):
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def runReport(work, store):
    proc = start(command() + ['report', store, '--html', os.path.join(work, 'r.html')])
    waitUntil(proc, lambda: store in openFiles(proc.pid))
    return measure(proc, signal.SIGINT)


def runExportFile(work, store):
    proc = start(command() + ['export', store, '-o', os.path.join(work, 'out.csv')])
    waitUntil(proc, lambda: glob.glob(os.path.join(work, '.*.buildbot-stats-tmp')))
    return measure(proc, signal.SIGTERM)


def runExportPipe(work, store):
    proc = start(command() + ['export', store])
    proc.stdout.readline()
    return measure(proc, signal.SIGINT)


def runBackfill(work, master):
    state = os.path.join(master, 'state.sqlite')
    holder = sqlite3.connect(state, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("COMMIT")
        proc = start(command() + ['backfill', master])
        proc.stderr.readline()  # "waiting for the master's database ..."
        return measure(proc, signal.SIGINT)
    finally:
        holder.close()


def runDemo(work, _):
    proc = start(command() + ['demo', '--dir', os.path.join(work, 'demo'), '--builds', '30'])
    while b'  build 1/30' not in proc.stdout.readline():
        pass
    return measure(proc, signal.SIGINT)


RUNS = {'report': runReport, 'export-file': runExportFile, 'export-pipe': runExportPipe,
        'backfill': runBackfill, 'demo': runDemo}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--n', type=int, default=5, help="runs of each scenario (default 5)")
    parser.add_argument('--points', type=int, default=200_000,
                        help="points of the store read (default 200,000)")
    parser.add_argument('--scenarios', default=','.join(SCENARIOS),
                        help=f"comma-separated, of {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(',') if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    result = {'bench': 'interrupt', 'n': args.n, 'points': args.points,
              'machine': machine(), 'load_before': os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix='bench-interrupt-') as work:
        store = os.path.join(work, 'big.sqlite')
        if {'report', 'export-file', 'export-pipe'} & set(scenarios):
            bigStore(store, args.points)
        master = os.path.join(work, 'master')
        if 'backfill' in scenarios:
            masterWithDatabase(master)
        for name in scenarios:
            seconds, statuses = [], []
            target = master if name == 'backfill' else store
            for _ in range(args.n):
                took, status = RUNS[name](work, target)
                seconds.append(took)
                statuses.append(status)
            result[name] = {'least_s': min(seconds), 'median_s': statistics.median(seconds),
                            'most_s': max(seconds), 'statuses': sorted(set(statuses))}
    result['load_after'] = os.getloadavg()
    print(json.dumps(r(result)))


if __name__ == '__main__':
    main()
