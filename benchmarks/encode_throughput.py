"""How many points per second LineEncoder.encode() turns into lines on this machine.

Usage: python benchmarks/encode_throughput.py [points]

Three shapes of point, all with the spec's two tags plus one extra tag:
the build-times point (two ISO strings and a float), a property point (two strings) and a
yieldMetricsValue point with five numeric fields. Prints points/s for each and for the mix.
"""

import sys
import time

from buildbot_stats.delivery.lineprotocol import LineEncoder

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000


def shapes(i):
    tags = {'builder_name': f'builder-{i % 20}', 'build_number': str(i),
            'master': 'master-1'}
    return [
        (f'builder-{i % 20}-build-times',
         {'start-time': '2024-05-01T10:00:00.123456+00:00',
          'end-time': '2024-05-01T10:05:00.654321+00:00', 'duration': 300.530865}, tags),
        (f'builder-{i % 20}-revision', {'name': 'revision', 'value': 'a1b2c3d4e5f6'}, tags),
        (f'builder-{i % 20}-test-results',
         {'passed': 1234, 'failed': 3, 'skipped': 17, 'duration': 61.25, 'ratio': 0.9975}, tags),
    ]


def main():
    encoder = LineEncoder()
    points = [shapes(i) for i in range(1000)]
    base = 1_714_557_600_000_000_000
    results = {}
    for idx, label in enumerate(['build-times', 'property', 'data (5 numbers)']):
        sample = [p[idx] for p in points]
        t0 = time.perf_counter()
        for i in range(N):
            name, fields, tags = sample[i % 1000]
            encoder.encode(name, fields, tags, base + i * 1000)
        dt = time.perf_counter() - t0
        results[label] = N / dt
    sample = [p for trio in points for p in trio]
    t0 = time.perf_counter()
    for i in range(N):
        name, fields, tags = sample[i % 3000]
        encoder.encode(name, fields, tags, base + i * 1000)
    results['mix'] = N / (time.perf_counter() - t0)
    for label, rate in results.items():
        print(f'{label:18s} {rate:12,.0f} points/s')


if __name__ == '__main__':
    main()
