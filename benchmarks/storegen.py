"""The builds of the store benchmarks: what each build's points hold (drawn at random, seeded),
and a store of millions of them written fast (direct SQL).

9 points per build, as the default captures plus the build statistics captures write them:
``<builder>-build-times`` (duration), ``builds`` (result), ``build_requests`` (queue time),
``tests`` (passed, failed, skipped), ``steps`` (4 steps), ``<builder>-coverage`` (percent);
4 builders, the builds spread evenly over ``days``.
"""

from __future__ import annotations

BUILDERS = ('compile', 'test', 'docs', 'package')
STEPS = ('checkout', 'configure', 'build', 'upload')
POINTS_PER_BUILD = 9


def drawBuild(rnd, i, n):
    """The numbers of build ``i`` of ``n``: durations grow slowly over the period, one build
    in ten fails."""
    duration = 60 + 30 * rnd.random() + 20 * (i / n)
    ok = rnd.random() > 0.1
    return {'duration': duration, 'ok': ok, 'queue_time': 5 * rnd.random(),
            'coverage': 80 + rnd.random(),
            'steps': [duration / 4 * (0.5 + rnd.random()) for _ in STEPS]}
