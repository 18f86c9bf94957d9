"""Which quantile sketch the embedded store's rollups keep: DDSketch (``ddsketch``), Apache
DataSketches KLL (``datasketches``) or a t-digest (``fastdigest``), measured on the data of the
store benchmark (:mod:`benchmarks.storegen`).

``python benchmarks/sketches.py`` builds one sketch per builder (or step) and hour from the
values of a year of builds, merges them as the page does (hours into days, days into a
range), and prints ONE JSON line with, per candidate:

* ``build_us_per_value``: building an hour's sketch from its values (the writer's cost);
* ``hour_bytes`` / ``day_bytes``: the serialized size of an hour's and a day's sketch (the
  store's size);
* ``merge_us``: reading one stored sketch back and merging it (the page's cost per row);
* ``max_rel_error``: the largest relative error of the median and the 90th percentile of
  every builder's (and step's) durations, queue times and coverage over 24 h, 7 d, 30 d and
  the whole year, against the exact ones (``statistics.median``, nearest-rank p90: what the
  page computes from raw points).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import harness  # noqa: E402


def percentile(values, q):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- the candidates: build from values, serialize, deserialize, merge, quantile ---------------

class DD:
    """DDSketch (DataDog's ``ddsketch``, pure Python) at 0.5 % relative accuracy; stored as
    its bins (the store's offset and counts)."""

    def __init__(self, alpha=0.005):
        import ddsketch

        self.ddsketch = ddsketch
        self.alpha = alpha
        self.name = f"ddsketch alpha={alpha}"

    def build(self, values):
        s = self.ddsketch.DDSketch(self.alpha)
        for v in values:
            s.add(v)
        return s

    def dumps(self, s):
        store = s._store
        bins = store.bins
        lo = next((i for i, c in enumerate(bins) if c), 0)
        hi = max((i for i, c in enumerate(bins) if c), default=-1) + 1
        counts = [int(c) for c in bins[lo:hi]]
        return struct.pack(f'<ddddqi{len(counts)}I', s._count, s._sum, s._min, s._max,
                           int(s._zero_count), store.offset + lo, *counts) \
            if s._negative_store.count == 0 else None

    def loads(self, b):
        count, total, lo, hi, zero, offset = struct.unpack_from('<ddddqi', b)
        n = (len(b) - 44) // 4
        counts = struct.unpack_from(f'<{n}I', b, 44)
        s = self.ddsketch.DDSketch(self.alpha)
        store = s._store
        for i, c in enumerate(counts):
            if c:
                store.add(offset + i, c)
        s._count, s._sum, s._min, s._max, s._zero_count = count, total, lo, hi, zero
        return s

    def merge(self, into, other):
        into.merge(other)
        return into

    def empty(self):
        return self.ddsketch.DDSketch(self.alpha)

    def quantile(self, s, q):
        return s.get_quantile_value(q)


class KLL:
    """Apache DataSketches' KLL sketch of doubles or floats (C++ through nanobind)."""

    def __init__(self, k=200, floats=False):
        import datasketches
        import numpy

        self.ds, self.np, self.k = datasketches, numpy, k
        self.kind = datasketches.kll_floats_sketch if floats else datasketches.kll_doubles_sketch
        self.dtype = numpy.float32 if floats else float
        self.name = f"datasketches KLL {'floats' if floats else 'doubles'} k={k}"

    def build(self, values):
        s = self.kind(self.k)
        s.update(self.np.asarray(values, dtype=self.dtype))
        return s

    def dumps(self, s):
        return s.serialize()

    def loads(self, b):
        return self.kind.deserialize(b)

    def merge(self, into, other):
        into.merge(other)
        return into

    def empty(self):
        return self.kind(self.k)

    def quantile(self, s, q):
        return s.get_quantile(q)


class TD:
    """A t-digest (``fastdigest``, Rust)."""

    def __init__(self, max_centroids=1000):
        import fastdigest

        self.fd, self.max_centroids = fastdigest, max_centroids
        self.name = f"fastdigest max_centroids={max_centroids}"

    def build(self, values):
        return self.fd.TDigest.from_values(values, max_centroids=self.max_centroids)

    def dumps(self, s):
        return s.to_bytes()

    def loads(self, b):
        return self.fd.TDigest.from_bytes(b)

    def merge(self, into, other):
        if into is None:
            return other
        into.merge_inplace(other)
        return into

    def empty(self):
        return None

    def quantile(self, s, q):
        return s.quantile(q)


# -- the data: a year of builds as the store benchmark writes them ---------------------------

def groups(days, builds_per_day, seed=1):
    """``{name: [(time, value), ...]}``: per builder its durations, queue times and coverage,
    per builder and step its step durations (values as benchmarks/storegen.py draws them)."""
    from benchmarks import storegen

    rnd = random.Random(seed)
    n = days * builds_per_day
    out = {}
    for i in range(n):
        t = i * 86400 / builds_per_day
        b = storegen.BUILDERS[i % len(storegen.BUILDERS)]
        build = storegen.drawBuild(rnd, i, n)
        out.setdefault(f"{b} duration", []).append((t, build['duration']))
        out.setdefault(f"{b} queue", []).append((t, build['queue_time']))
        out.setdefault(f"{b} coverage", []).append((t, build['coverage']))
        for step, d in zip(storegen.STEPS, build['steps']):
            out.setdefault(f"{b} {step}", []).append((t, d))
    return out


def measure(cand, data, days):
    hours = {}  # name -> {hour: [values]}
    for name, tvs in data.items():
        per = hours.setdefault(name, {})
        for t, v in tvs:
            per.setdefault(int(t // 3600), []).append(v)
    # the writer: one sketch per name and hour
    built, t0, n = {}, time.perf_counter(), 0
    for name, per in hours.items():
        for h, vs in per.items():
            built[(name, h)] = cand.dumps(cand.build(vs))
            n += len(vs)
    build_us = (time.perf_counter() - t0) / n * 1e6
    hour_bytes = statistics.mean(len(b) for b in built.values())
    # days: the hours' sketches merged (what the store keeps at the daily level)
    day_sketches, t0, merges = {}, time.perf_counter(), 0
    for (name, h), b in built.items():
        key = (name, h // 24)
        day_sketches[key] = cand.merge(day_sketches.get(key, cand.empty()), cand.loads(b))
        merges += 1
    merge_us = (time.perf_counter() - t0) / merges * 1e6
    day_bytes = {k: cand.dumps(s) for k, s in day_sketches.items()}
    day_size = statistics.mean(len(b) for b in day_bytes.values())
    # ranges ending at the last day: 24 h from hours, longer ranges from days
    errors, worst = [], None
    last_day = days - 1
    for name, tvs in data.items():
        for label, span in (('24h', 1), ('7d', 7), ('30d', 30), ('all', days)):
            lo_day = last_day - span + 1
            values = [v for t, v in tvs if t // 86400 >= lo_day]
            if span == 1:
                rows = [b for (nm, h), b in built.items() if nm == name and h // 24 >= lo_day]
            else:
                rows = [b for (nm, d), b in day_bytes.items() if nm == name and d >= lo_day]
            merged = cand.empty()
            for b in rows:
                merged = cand.merge(merged, cand.loads(b))
            for q, exact in (('median', statistics.median(values)),
                             ('p90', percentile(values, 0.9))):
                got = cand.quantile(merged, 0.5 if q == 'median' else 0.9)
                err = abs(got - exact) / abs(exact) if exact else abs(got)
                errors.append(err)
                if worst is None or err > worst[0]:
                    worst = (err, name, label, q, exact, got)
    return {'build_us_per_value': build_us, 'hour_bytes': hour_bytes, 'day_bytes': day_size,
            'merge_us': merge_us, 'max_rel_error': max(errors),
            'mean_rel_error': statistics.mean(errors),
            'worst': {'name': worst[1], 'range': worst[2], 'quantile': worst[3],
                      'exact': worst[4], 'sketch': worst[5]}}


DEFAULT_CANDIDATES = 'dd=0.005,kll=200,kll=800,kllf=400,td=100,td=300,td=1000'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--days', type=int, default=365)
    p.add_argument('--builds-per-day', type=int, default=3000,
                   help="builds a day, all builders (default 3000: 10,000,000 points a year)")
    p.add_argument('--candidates', default=DEFAULT_CANDIDATES,
                   help=f"which sketches (default {DEFAULT_CANDIDATES})")
    args = p.parse_args(argv)
    data = groups(args.days, args.builds_per_day)
    out = {}
    for spec in args.candidates.split(','):
        kind, _, param = spec.partition('=')
        cand = {'dd': lambda p: DD(float(p)), 'kll': lambda p: KLL(int(p)),
                'kllf': lambda p: KLL(int(p), floats=True),
                'td': lambda p: TD(int(p))}[kind](param)
        out[cand.name] = measure(cand, data, args.days)
    print(json.dumps(harness.r({'bench': 'sketches', 'days': args.days,
                                'builds_per_day': args.builds_per_day, 'candidates': out,
                                'machine': harness.machine()})))


if __name__ == '__main__':
    main()
