"""``buildbot-stats``: the command line entry point (argparse subcommands)."""

from __future__ import annotations

import argparse
import sys

from buildbot_stats import __version__
from buildbot_stats.cli.common import CliError


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (the usage is one --help away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def makeParser():
    from buildbot_stats.cli import backfill
    from buildbot_stats.cli import demo
    from buildbot_stats.cli import export
    from buildbot_stats.cli import report

    parser = Parser(
        prog='buildbot-stats',
        description="Build statistics from a Buildbot master's embedded store: run a demo, "
        "summarize and chart a store, export it, backfill past builds.")
    parser.add_argument('--version', action='version', version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', parser_class=Parser)
    sub.required = True
    demo.addParser(sub)
    report.addParser(sub)
    export.addParser(sub)
    backfill.addParser(sub)
    return parser


def main(argv=None, out=None):
    out = sys.stdout if out is None else out
    args = makeParser().parse_args(argv)
    try:
        return args.func(args, out) or 0
    except CliError as e:
        print(f"buildbot-stats {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `buildbot-stats export ... | head`
        return 0
    except KeyboardInterrupt:
        print(f"buildbot-stats {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
