"""How hard and how often a batch is tried again, and the options of the whole pipeline."""

from __future__ import annotations

import random
from dataclasses import dataclass
from dataclasses import fields

from buildbot_stats.checks import countProblem
from buildbot_stats.checks import durationProblem
from buildbot_stats.checks import seconds
from buildbot_stats.checks import shown

#: The options that are durations (seconds, or ``'30s'``, ``'2m'``...), and whether 0 is
#: allowed (a stop_timeout of 0: the stop does not wait)
DURATIONS = {'flush_interval': False, 'timeout': False, 'retry_interval': False,
             'max_retry_delay': False, 'slow_retry_interval': False, 'report_interval': False,
             'stop_timeout': True}
#: The options that are counts
COUNTS = ('batch_size', 'buffer_limit', 'max_in_flight')


@dataclass
class WriteOptions:
    """Batching, retry and buffering options, each with its default.

    Times are seconds (floats); a duration may also be given as a string such as ``'30s'``,
    ``'2m'`` (:mod:`buildbot_stats.checks`), kept as its seconds.

    * ``batch_size`` (5000): most lines in one HTTP request
    * ``flush_interval`` (1.0): a partial batch is sent after at most this long
    * ``buffer_limit`` (100000): most lines kept in memory (and in the spool); when full the
      oldest are dropped and counted
    * ``timeout`` (10.0): one write request, headers and body, must finish within this
    * ``retry_interval`` (1.0): the first delay after a failed attempt
    * ``exponential_base`` (2.0): each further failure multiplies the delay by this
    * ``max_retry_delay`` (120.0): no delay is longer (a ``Retry-After`` too is capped to it)
    * ``jitter`` (0.2): each delay is shortened by a random fraction up to this, so that
      several masters do not retry in step
    * ``max_retries`` (None): after this many failed attempts in a row a batch is dropped
      and counted; ``None`` retries for ever (nothing is lost while the buffer has room)
    * ``slow_retry_interval`` (60.0): the delay after 401, 403 and 404 answers, which wait
      for an operator to fix the credentials or the database
    * ``stop_timeout`` (10.0): how long stopping waits for pending points to be written
      before it spools (or counts as dropped) what is left
    * ``report_interval`` (60.0): while something is wrong, the counters are logged this
      often
    * ``max_in_flight`` (2): write requests sent before the first is answered; the server
      works on one batch while the next travels. With more than one, batches may land out
      of order (every point carries its own time, so InfluxDB stores the same); 1 keeps
      the order in which points were posted
    """

    batch_size: int = 5000
    flush_interval: float = 1.0
    buffer_limit: int = 100_000
    timeout: float = 10.0
    retry_interval: float = 1.0
    exponential_base: float = 2.0
    max_retry_delay: float = 120.0
    jitter: float = 0.2
    max_retries: int | None = None
    slow_retry_interval: float = 60.0
    stop_timeout: float = 10.0
    report_interval: float = 60.0
    max_in_flight: int = 2

    def __post_init__(self):
        # a duration given as '30s' is kept as its seconds; a bad one as given, for problems()
        for name in DURATIONS:
            value = getattr(self, name)
            if durationProblem(name, value, zero=DURATIONS[name]) is None:
                setattr(self, name, seconds(value))

    @classmethod
    def names(cls):
        return [f.name for f in fields(cls)]

    def problems(self):
        """Human-readable problems with the values (empty when all are fine), each by the
        rules of :mod:`buildbot_stats.checks`."""
        out = [countProblem(name, getattr(self, name)) for name in COUNTS]
        out += [durationProblem(name, getattr(self, name), zero=zero)
                for name, zero in DURATIONS.items()]
        out.append(countProblem('max_retries', self.max_retries, minimum=0,
                                none_means="retry for ever"))
        out = [p for p in out if p is not None]
        if not out and self.buffer_limit < self.batch_size:
            out.append(f"buffer_limit ({self.buffer_limit}) must be at least batch_size "
                       f"({self.batch_size})")
        eb = self.exponential_base
        if isinstance(eb, bool) or not isinstance(eb, (int, float)) or not eb >= 1:
            out.append(f"exponential_base must be a number >= 1, got {shown(eb)}")
        j = self.jitter
        if isinstance(j, bool) or not isinstance(j, (int, float)) or not 0 <= j < 1:
            out.append(f"jitter must be a fraction in [0, 1), got {shown(j)}")
        return out


class Backoff:
    """The delay before the next attempt after ``failures`` failed attempts in a row."""

    def __init__(self, options: WriteOptions, random_fraction=random.random):
        self.options = options
        # injected so that tests get exact delays
        self.random_fraction = random_fraction

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        o = self.options
        if retry_after is not None:
            # the server knows best when it will be ready; only its upper bound is ours
            return min(max(retry_after, 0.0), o.max_retry_delay)
        # the exponent is bounded: the delay is capped long before, and floats overflow
        base = o.retry_interval * o.exponential_base ** min(max(failures - 1, 0), 64)
        base = min(base, o.max_retry_delay)
        return base * (1.0 - o.jitter * self.random_fraction())
