"""Analyses of the read side: pure functions over plain sequences (no I/O, no clock), so that
each is tested on generated series with known answers. The readers feed them; the page, the
CLI and /metrics show what they find."""

import importlib.util
import sys

CHANGEPOINTS = 'buildbot_stats.analysis.changepoints'


def changeDetectionInstalled():
    """Whether :mod:`~buildbot_stats.analysis.changepoints` can detect changes. Asked
    without importing it while it is not imported yet: Otava brings SciPy, about 1 s of CPU,
    which a view of the page or a report with nothing to analyse must not pay."""
    module = sys.modules.get(CHANGEPOINTS)
    if module is not None:
        return module.available()
    return all(importlib.util.find_spec(name) is not None for name in ('numpy', 'otava'))
