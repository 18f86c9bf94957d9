"""``buildbot-stats regressions STORE``: what got slower (or faster), and since which build.

The full analysis, on demand: every measured series of the store (an SQLite file or an
InfluxDB 1.x database) is analysed here (:mod:`buildbot_stats.analysis.changepoints`, the
master's settings); a change a master kept (series ``change_points``, attributed from its
database) lends its revision, branch, link and changes (commits). Exit status 1 when a
change for the worse since ``--since`` is found, so that a CI job can gate on it.
"""

from __future__ import annotations

import json
import os
import urllib.parse

from buildbot_stats.cli.common import TIME_HELP
from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import isoTime
from buildbot_stats.cli.common import openStoreOrFail
from buildbot_stats.cli.common import parseTime
from buildbot_stats.cli.common import plural
from buildbot_stats.cli.common import printable
from buildbot_stats.reading.changes import ATTRIBUTION
from buildbot_stats.reading.changes import DEFAULT_HIGHER_IS_BETTER
from buildbot_stats.reading.changes import DEFAULT_MIN_SIZE
from buildbot_stats.reading.changes import SeriesWindow
from buildbot_stats.reading.changes import details
from buildbot_stats.reading.changes import fmtConfidence
from buildbot_stats.reading.changes import foundRecord
from buildbot_stats.reading.changes import headline
from buildbot_stats.reading.changes import matches

# The analysis (NumPy, Otava), the InfluxDB reader and the master's settings are imported
# when the command runs: every command's start (``--help`` included) stays quick.

FORMATS = ('text', 'json')
#: a change for the worse since --since was found (0: none; 2: a mistake, as every command)
EXIT_WORSE = 1
#: where the InfluxDB credentials come from (never the command line: ps shows it)
ENV_USER, ENV_PASSWORD, ENV_TOKEN = 'INFLUX_USERNAME', 'INFLUX_PASSWORD', 'INFLUX_TOKEN'


def addParser(sub):
    p = sub.add_parser(
        'regressions', help="what got slower or faster, and since which build",
        description="Find the persistent, significant changes (change points) of every "
        "measured series of a store: build, step and queue times, test counts, custom "
        "values. Newest first. Exit status 1 when a change for the worse newer than --since "
        "is found (a slowdown; for a higher-is-better series, a fall), 0 when none is, 2 for "
        "a mistake.")
    p.add_argument('store', metavar='STORE',
                   help="the SQLite store (master/stats.sqlite), or an InfluxDB 1.x database "
                   "as http://host:8086/DATABASE (credentials from $INFLUX_USERNAME and "
                   "$INFLUX_PASSWORD, or $INFLUX_TOKEN; ?rp=NAME for a retention policy)")
    p.add_argument('--since', metavar='WHEN',
                   help=f"only changes that began at or after WHEN: {TIME_HELP} (default: "
                   "every change)")
    p.add_argument('--builder', metavar='NAME', action='append', dest='builders',
                   help="only this builder's series; repeat for several (default: all)")
    p.add_argument('--series', metavar='NAME', action='append',
                   help="only the series of this name or shell pattern (duration, "
                   "'step:*', queue, tests, coverage.percent); repeat for several (default: "
                   "all)")
    p.add_argument('--format', '-f', choices=FORMATS, default='text',
                   help="text (default) or json")
    p.add_argument('--min-size', metavar='PERCENT', type=float,
                   default=DEFAULT_MIN_SIZE * 100,
                   help="the smallest change reported, in percent of the median before "
                   f"(default {DEFAULT_MIN_SIZE * 100:g}, as in the master)")
    p.add_argument('--higher-is-better', metavar='PATTERN', action='append',
                   help="a series where a fall, not a rise, is for the worse; repeat for "
                   f"several (default: {', '.join(DEFAULT_HIGHER_IS_BETTER)})")
    p.set_defaults(func=run)
    return p


def openReader(store):
    """The reader of ``store``: a path, or an InfluxDB URL whose path is the database."""
    if not store.startswith(('http://', 'https://')):
        return openStoreOrFail(store)
    from buildbot_stats.reading.influxdb import InfluxReader

    try:
        url = urllib.parse.urlsplit(store)
        url.port  # noqa: B018 - a port out of range raises here
    except ValueError as e:  # never the URL itself: it may hold a password
        raise CliError(f"the InfluxDB URL is not valid ({e})") from None
    # before anything names the URL: its credentials are never shown
    if url.username or url.password:
        raise CliError(f"{url.scheme}://{url.hostname}: give the InfluxDB credentials in "
                       f"${ENV_USER} and ${ENV_PASSWORD} (or ${ENV_TOKEN}), not in the URL")
    db = urllib.parse.unquote(url.path.strip('/'))
    if not db or '/' in db:
        raise CliError(f"{store}: an InfluxDB URL names its database as its path "
                       "(http://host:8086/DATABASE)")
    rp = urllib.parse.parse_qs(url.query).get('rp', [None])[0]
    return InfluxReader(f"{url.scheme}://{url.netloc}", db, user=os.environ.get(ENV_USER),
                        password=os.environ.get(ENV_PASSWORD),
                        token=os.environ.get(ENV_TOKEN), retention_policy=rp)


def settings(args):
    from buildbot_stats.regressions import Regressions

    if not 0 < args.min_size < 10000:
        raise CliError(f"--min-size must be a percentage above 0, got {args.min_size:g}")
    patterns = tuple(args.higher_is_better or DEFAULT_HIGHER_IS_BETTER)
    if not all(patterns):
        raise CliError("--higher-is-better needs a series name or pattern, got ''")
    return Regressions(min_size=args.min_size / 100, higher_is_better=patterns)


def analyse(reader, options, builders=None, patterns=None):
    """The change records of the store of ``reader`` (newest first) and the number of
    series analysed: the full analysis with ``options`` (a :class:`Regressions`), each
    found change attributed as a master kept it, if one did."""
    known = reader.builderNames()
    for b in builders or ():
        if b not in known:
            raise CliError(f"unknown builder {b!r} (the store has: "
                           f"{', '.join(known[:8]) or 'none'}{', ...' if len(known) > 8 else ''})")
    series, kept = {}, []
    for b in builders or [None]:
        series.update(reader.measuredSeries(b))
        kept.extend(reader.changePoints(b))
    if patterns:
        names = sorted({name for _, name in series})
        for pattern in patterns:
            if not any(matches(name, [pattern]) for name in names):
                raise CliError(f"no series matches {pattern!r} (the store has: "
                               f"{', '.join(names[:8]) or 'none'}"
                               f"{', ...' if len(names) > 8 else ''})")
        series = {k: v for k, v in series.items() if matches(k[1], patterns)}
    kept_by = {}
    for record in kept:
        if not record['withdrawn']:
            kept_by.setdefault((record['builder'], record['series']), []).append(record)
    from buildbot_stats.analysis import changepoints

    detector = options.detector()
    out = []
    for key in sorted(series):
        window = SeriesWindow(series[key][-options.history:])
        found = detector.find(window.values)
        records = kept_by.get(key, [])
        result = changepoints.reconcile(found, window.positions(records))
        attributed = {id(change): records[k] for change, k in result.matched}
        for change in found:
            record = foundRecord(key, window, change, options.isWorse)
            known_record = attributed.get(id(change))
            if known_record is not None:
                record.update({k: known_record.get(k) for k in ATTRIBUTION})
                record['url'] = known_record.get('url')
            out.append(record)
    out.sort(key=lambda r: (r['time'], r['builder'], r['series']), reverse=True)
    return out, len(series)


def run(args, out):
    from buildbot_stats.analysis import changepoints

    since = parseTime(args.since, '--since') if args.since is not None else None
    options = settings(args)
    if not changepoints.available():
        raise CliError(f"change detection needs the {changepoints.PACKAGE} package: "
                       f"{changepoints.INSTALL}")
    with openReader(args.store) as reader:
        records, analysed = analyse(reader, options, args.builders, args.series)
    if since is not None:
        records = [r for r in records if r['time'] >= since]
    worse = [r for r in records if r['worse']]
    if args.format == 'json':
        out.write(json.dumps({'series_analysed': analysed, 'since': since,
                              'changes': [jsonRecord(r) for r in records],
                              'worse': len(worse)}, indent=2, ensure_ascii=False) + '\n')
    else:
        out.write(text(records, analysed, since))
    return EXIT_WORSE if worse else 0


def jsonRecord(record):
    out = {'time': isoTime(record['time']), 'timestamp': record['time']}
    out.update({k: v for k, v in record.items() if k not in ('time', 'withdrawn')})
    return out


def text(records, analysed, since):
    when = f" since {isoTime(since)}" if since is not None else ""
    worse = sum(1 for r in records if r['worse'])
    lines = [f"{plural(len(records), 'change')}{when} in {plural(analysed, 'series', 'series')}"
             f" ({worse} for the worse), newest first."]
    for r in records:
        lines.append("")
        lines.append(f"{isoTime(r['time'], 'seconds')}  {printable(headline(r))}"
                     f"{' (worse)' if r['worse'] else ''}")
        about = details(r) + [f"confidence {fmtConfidence(r['confidence'])}"]
        lines.append("    " + printable(", ".join(about)))
        if r.get('changes'):
            for comment in (r.get('comments') or [])[-3:]:
                first = comment.splitlines()[0] if comment else ''
                lines.append(f"      - {printable(first[:100])}")
        if r.get('url'):
            lines.append(f"    {printable(r['url'])}")
    return "\n".join(lines) + "\n"
