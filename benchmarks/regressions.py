"""Change detection: how well and how fast (docs/benchmarks.rst, "Change detection").

Usage: python benchmarks/regressions.py [--trials N] [--live-series N] [--series N]
       [--builds N] [--detectors otava,ruptures] [--seed N]

Series of known change points under noise like real CI's (:func:`noisy`): log-normal around
the level with sigma 8 %; 2 % outliers, each the value times a factor drawn between 1 and 3
(a slow worker, a cold cache); values under a minute rounded to whole seconds, as Buildbot
stores build times. Each series' level is drawn log-uniformly between 5 s and 2 h.

Quality, per detector:

* ``false_alarms_per_1000``: changes found in series without one, per 1,000 builds (the
  full analysis);
* ``live_false_alarms_per_1000``: the same, as the master announces them: after each build
  its newest builds are analysed again and a change is announced once (what a log line or an
  alert sees; a change announced and later withdrawn counts);
* ``found_pct`` for +20 %, +50 %, -20 % steps (100 builds before, 100 after): trials with a
  change reported within 5 builds of where the step began; ``extra``: other changes;
  ``live_within_5_pct``: trials where the master announced it at most 5 builds after the
  step began; ``live_median_builds``: builds after the step until it was announced;
* ``slowdown_and_fix_pct``: 100 builds, 50 at +50 %, 100 back: trials with exactly those two
  changes, each within 5 builds.

Cost: ``full``: ``--series`` series of ``--builds`` builds each (one step at a random
place), analysed one after the other (CPU and wall seconds); ``update``: the analysis after
a build (the master's: its newest 500 builds), CPU milliseconds per series; ``store``: the
master's own full analysis and update (:class:`buildbot_stats.regressions.Regressions`)
reading an SQLite store of those series.

The detectors: ``otava`` is buildbot_stats' (:mod:`buildbot_stats.analysis.changepoints`:
Apache Otava's E-divisive means and t-test); ``ruptures`` is the ``ruptures`` package's
KernelCPD (linear kernel, the "l2" cost: mean shifts) with a penalty of 3 x noise^2 x ln n,
given the same cleaning, minimum run and minimum size (only the search and the significance
rule differ). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from benchmarks.harness import machine  # noqa: E402
from benchmarks.harness import r  # noqa: E402
from buildbot_stats.analysis import changepoints  # noqa: E402
from buildbot_stats.analysis.changepoints import Change  # noqa: E402
from buildbot_stats.analysis.changepoints import ChangeDetector  # noqa: E402

SIGMA = 0.08
OUTLIERS = 0.02
MAX_OUTLIER = 3.0
WHOLE_SECONDS_BELOW = 60.0
LEVELS = (5.0, 7200.0)
#: a change "found" is reported this many builds from where it began, at most
NEAR = 5
#: the newest builds the master looks at again after a build (Regressions' default)
RECENT = 500


def noisy(levels, rng, sigma=SIGMA, outliers=OUTLIERS):
    """Values of a series: ``levels`` is ``[(builds, level), ...]``; the noise model of the
    module's docstring."""
    out = []
    for count, level in levels:
        x = level * np.exp(rng.normal(0.0, sigma, count))
        slow = rng.random(count) < outliers
        x[slow] *= rng.uniform(1.0, MAX_OUTLIER, int(slow.sum()))
        out.append(np.where(x < WHOLE_SECONDS_BELOW, np.round(x), x))
    return np.concatenate(out)


def level(rng):
    lo, hi = LEVELS
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


class RupturesDetector:
    """ruptures' KernelCPD with our cleaning and acceptance rules, for the comparison."""

    def __init__(self, base=None, penalty=3.0):
        self.base = base or ChangeDetector()
        self.penalty = penalty
        self.window = self.base.window
        self.min_run = self.base.min_run

    def find(self, values):
        import ruptures

        raw = np.asarray(values, dtype=np.float64)
        if len(raw) < 2 * self.min_run:
            return []
        cleaned, noise, unit = changepoints.clean(raw, self.base.clip)
        signal = np.log(np.maximum(cleaned, 1e-9))
        noise = max(noise, 1e-6)
        algo = ruptures.KernelCPD(kernel='linear', min_size=self.min_run).fit(signal)
        bounds = [0] + algo.predict(pen=self.penalty * noise * noise * math.log(len(raw)))
        out = []
        for i in range(1, len(bounds) - 1):
            if min(bounds[i] - bounds[i - 1], bounds[i + 1] - bounds[i]) < self.min_run:
                continue
            before, after = changepoints.sides(raw, bounds[i - 1], bounds[i], bounds[i + 1])
            change = abs(after - before)
            if before and change / abs(before) >= self.base.min_magnitude and change >= unit:
                out.append(Change(index=bounds[i], before=before, after=after, pvalue=0.0))
        return out


def detectors(names):
    out = {}
    for name in names:
        if name == 'otava':
            out[name] = ChangeDetector()
        elif name == 'ruptures':
            out[name] = RupturesDetector()
        else:
            raise SystemExit(f"unknown detector {name!r}")
    return out


# -- quality ---------------------------------------------------------------------------------

def live(values, detector, recent=RECENT):
    """The master's way over ``values`` fed one build at a time: ``[(builds seen, index,
    direction), ...]`` of the changes announced (each once), and the indexes withdrawn."""
    kept = []  # [index, direction, withdrawn]
    announced, withdrawn = [], []
    for n in range(2 * detector.min_run, len(values) + 1):
        lo = max(0, n - recent)
        window = values[lo:n]
        found = detector.find(window)
        active = [k for k in kept if not k[2]]
        positions = [(k[0] - lo if k[0] >= lo else None, k[1]) for k in active]
        result = changepoints.reconcile(
            found, positions, settled_from=max(0, len(window) - 2 * detector.window))
        for change in result.new:
            kept.append([change.index + lo, change.direction, False])
            announced.append((n, change.index + lo, change.direction))
        for g in result.gone:
            active[g][2] = True
            withdrawn.append(active[g][0])
    return announced, withdrawn


def quality(detector, rng, trials, live_series, live_builds=1000):
    out = {}
    builds = found = 0
    for _ in range(trials):
        values = noisy([(1000, level(rng))], rng)
        found += len(detector.find(values))
        builds += len(values)
    out['false_alarms_per_1000'] = 1000.0 * found / builds
    builds = announced = withdrawn = 0
    for _ in range(live_series):
        values = noisy([(live_builds, level(rng))], rng)
        a, w = live(values, detector)
        announced += len(a)
        withdrawn += len(w)
        builds += len(values)
    out['live_builds'] = builds
    out['live_false_alarms_per_1000'] = 1000.0 * announced / builds if builds else None
    out['live_withdrawn'] = withdrawn
    for size in (0.2, 0.5, -0.2):
        hits = extra = 0
        delays = []
        for trial in range(trials):
            base = level(rng)
            values = noisy([(100, base), (100, base * (1 + size))], rng)
            changes = detector.find(values)
            hits += any(abs(c.index - 100) <= NEAR for c in changes)
            extra += sum(1 for c in changes if abs(c.index - 100) > NEAR)
            if trial < max(1, trials // 4):
                # live: the builds after the step until the master announced it
                delay = None
                a, _ = live(values[:100 + 30], detector)
                for seen, index, _ in a:
                    if abs(index - 100) <= NEAR:
                        delay = seen - 100
                        break
                delays.append(delay if delay is not None else math.inf)
        key = f"{size * 100:+.0f}%"
        out[key] = {
            'found_pct': 100.0 * hits / trials, 'extra': extra,
            'live_within_5_pct': 100.0 * sum(d <= NEAR for d in delays) / len(delays),
            'live_within_10_pct': 100.0 * sum(d <= 10 for d in delays) / len(delays),
            'live_median_builds': statistics.median(delays) if delays else None,
        }
    both = 0
    for _ in range(trials):
        base = level(rng)
        changes = detector.find(noisy([(100, base), (50, base * 1.5), (100, base)], rng))
        both += (len(changes) == 2 and abs(changes[0].index - 100) <= NEAR
                 and changes[0].direction == 'up' and abs(changes[1].index - 150) <= NEAR
                 and changes[1].direction == 'down')
    out['slowdown_and_fix_pct'] = 100.0 * both / trials
    return out


# -- cost ------------------------------------------------------------------------------------

def manySeries(rng, count, builds):
    out = []
    for _ in range(count):
        at = int(rng.integers(builds // 4, 3 * builds // 4))
        base = level(rng)
        out.append(noisy([(at, base), (builds - at, base * 1.3)], rng))
    return out


def cost(detector, series):
    cpu, wall = time.process_time(), time.perf_counter()
    found = sum(len(detector.find(values)) for values in series)
    full = {'series': len(series), 'builds': len(series[0]) if series else 0,
            'cpu_s': time.process_time() - cpu, 'wall_s': time.perf_counter() - wall,
            'changes_found': found}
    # after a build: the newest RECENT builds of each series, one build more each time
    times = []
    for values in series:
        for extra in range(10):
            window = values[-RECENT - 10 + extra:len(values) - 10 + extra]
            t = time.thread_time()
            detector.find(window)
            times.append(time.thread_time() - t)
    times.sort()
    update = {'updates': len(times), 'cpu_ms_mean': 1000 * statistics.mean(times),
              'cpu_ms_p99': 1000 * times[max(0, int(len(times) * 0.99) - 1)],
              'cpu_ms_max': 1000 * times[-1]}
    return {'full': full, 'update': update}


def storeCost(series, builders=10):
    """The master's full analysis and update (Regressions) reading an SQLite store of the
    series: one builder per ``len(series) / builders`` series, a step per series."""
    from buildbot_stats.regressions import Regressions
    from buildbot_stats.storage.sqlite import SQLiteStorageService
    from buildbot_stats.storage.sqlite.values import encodeRow
    from buildbot_stats.storage.sqlite.writer import StoreWriter

    tmp = tempfile.mkdtemp(prefix='bbstats-regressions-')
    path = os.path.join(tmp, 'stats.sqlite')
    per = max(1, len(series) // builders)
    t0 = 1_700_000_000.0
    writer = StoreWriter(5.0)
    rows = []
    for k, values in enumerate(series):
        builder = f"builder{k // per}"
        step = k % per
        for i, v in enumerate(values):
            tags = {'builder_name': builder, 'build_number': str(i + 1)}
            when = t0 + 60 * i + step
            if step == 0:
                rows.append(encodeRow(f"{builder}-build-times", tags, {'duration': float(v)},
                                      when))
            else:
                rows.append(encodeRow('steps', dict(tags, step_name=f"step{step}"),
                                      {'duration': float(v), 'build_number': i + 1}, when))
        if len(rows) > 100_000:
            writer.write(path, rows)
            rows = []
    writer.write(path, rows)
    writer.close()

    class Service:  # what Regressions reads of the StatsService: its backends
        master = None

    backend = SQLiteStorageService(path)
    backend.path = path
    service = Service()
    service.backends = [backend]
    regressions = Regressions()
    regressions.attach(service)
    cpu, wall = time.process_time(), time.perf_counter()
    new, _ = regressions.analyseAll()
    full = {'cpu_s': time.process_time() - cpu, 'wall_s': time.perf_counter() - wall,
            'series': len(regressions.windows), 'changes_found': len(new)}
    # one build more of builder0 (all its series), then the update
    builds = len(series[0])
    rows = []
    for step in range(per):
        tags = {'builder_name': 'builder0', 'build_number': str(builds + 1)}
        when = t0 + 60 * builds + step
        if step == 0:
            rows.append(encodeRow('builder0-build-times', tags, {'duration': 10.0}, when))
        else:
            rows.append(encodeRow('steps', dict(tags, step_name=f"step{step}"),
                                  {'duration': 10.0, 'build_number': builds + 1}, when))
    writer.write(path, rows)
    writer.close()
    cpu, wall = time.thread_time(), time.perf_counter()
    regressions.analyseBuilders(['builder0'])
    update = {'series': per, 'cpu_ms_per_series': 1000 * (time.thread_time() - cpu) / per,
              'wall_ms': 1000 * (time.perf_counter() - wall)}
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return {'full': full, 'update': update}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--trials', type=int, default=200)
    parser.add_argument('--live-series', type=int, default=40,
                        help="series of 1,000 builds fed one build at a time (live false "
                        "alarms)")
    parser.add_argument('--series', type=int, default=100)
    parser.add_argument('--builds', type=int, default=10000)
    parser.add_argument('--detectors', default='otava,ruptures')
    parser.add_argument('--seed', type=int, default=20)
    parser.add_argument('--no-store', action='store_true',
                        help="leave out the store variant (the master's, reading SQLite)")
    args = parser.parse_args(argv)
    result = {'bench': 'regressions', 'machine': machine(), 'trials': args.trials,
              'noise': {'sigma': SIGMA, 'outliers': OUTLIERS, 'max_outlier': MAX_OUTLIER,
                        'whole_seconds_below': WHOLE_SECONDS_BELOW, 'levels': LEVELS}}
    series = manySeries(np.random.default_rng(args.seed + 1), args.series, args.builds)
    for name, detector in detectors(args.detectors.split(',')).items():
        rng = np.random.default_rng(args.seed)
        try:
            result[name] = {'quality': quality(detector, rng, args.trials, args.live_series),
                            'cost': cost(detector, series)}
        except ImportError as e:
            result[name] = {'error': str(e)}
    if not args.no_store:
        result['store'] = storeCost(series)
    print(json.dumps(r(result)))


if __name__ == '__main__':
    main()
