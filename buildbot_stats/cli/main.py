"""``buildbot-stats``: the command line entry point (argparse subcommands).

Every command runs inside one error boundary, :func:`runCommand`: what a user can cause (a
bad argument, a missing, unreadable, damaged or locked file, a full disk) is one line on
standard error and exit status 2; anything else is a bug, whose traceback goes to a file in
the temporary directory, named on one line, with exit status 1. The terminal never shows a
traceback. A new command only adds its parser in :func:`makeParser`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sqlite3
import sys
import tempfile
import traceback

from buildbot_stats import __version__
from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import oneLine
from buildbot_stats.cli.interrupt import SignalGuard
from buildbot_stats.storage.sqlite.schema import StoreError

PROG = 'buildbot-stats'
EXIT_OK = 0
EXIT_BUG = 1  # an unexpected exception: the traceback is in a file
EXIT_ERROR = 2  # a mistake or a problem with a file: one line says which
EXIT_INTERRUPTED = 130  # Ctrl-C (143 after SIGTERM: cli.interrupt)


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (the usage is one --help away)."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {oneLine(message)} (see {self.prog} --help)\n")


def makeParser():
    from buildbot_stats.cli import backfill
    from buildbot_stats.cli import compact
    from buildbot_stats.cli import demo
    from buildbot_stats.cli import export
    from buildbot_stats.cli import influxdb_rollups
    from buildbot_stats.cli import prune
    from buildbot_stats.cli import regressions
    from buildbot_stats.cli import report
    from buildbot_stats.cli import rollups
    from buildbot_stats.cli import tests

    parser = Parser(
        prog=PROG,
        description="Build statistics from a Buildbot master's embedded store: run a demo, "
        "summarize and chart a store, export it, backfill past builds, find what got "
        "slower, find flaky, failing and slow tests, prune and compact a store, rebuild its "
        "rollups.")
    parser.add_argument('--version', action='version', version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', parser_class=Parser)
    sub.required = True
    demo.addParser(sub)
    report.addParser(sub)
    export.addParser(sub)
    backfill.addParser(sub)
    regressions.addParser(sub)
    prune.addParser(sub)
    compact.addParser(sub)
    rollups.addParser(sub)
    influxdb_rollups.addParser(sub)
    tests.addParser(sub)
    return parser


def fail(command, message):
    """One line on standard error; :data:`EXIT_ERROR`."""
    print(f"{PROG} {command}: error: {oneLine(message)}", file=sys.stderr)
    return EXIT_ERROR


def describeOSError(e):
    """``path: reason`` of an OSError (both paths of a rename)."""
    reason = e.strerror or str(e)
    paths = [p for p in (e.filename, e.filename2) if p is not None]
    return f"{' -> '.join(map(str, paths))}: {reason}" if paths else reason


def saveTraceback(command, argv):
    """Write the exception being handled to a file in the temporary directory; its path."""
    fd, path = tempfile.mkstemp(prefix=f'{PROG}-{command}-', suffix='.traceback.txt')
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        f.write(f"{PROG} {__version__}, Python {sys.version.split()[0]}, "
                f"{datetime.datetime.now(datetime.timezone.utc).isoformat()}\n"
                f"arguments: {argv!r}\n\n")
        traceback.print_exc(file=f)
    return path


def unexpected(command, argv, e):
    summary = oneLine(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)[:200]
    try:
        where = f"the full traceback is in {saveTraceback(command, argv)}"
    except OSError as err:
        where = f"its traceback could not be saved ({err.strerror})"
    print(f"{PROG} {command}: internal error ({summary}); {where}; please report it",
          file=sys.stderr)
    return EXIT_BUG


def silenceStdout():
    """After a closed pipe (``export ... | head``): no second error when Python flushes."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def runCommand(command, func, *args, argv=None):
    """The error boundary of every command: ``func(*args)``'s exit status, never a
    traceback on the terminal; Ctrl-C or SIGTERM ends it within a second
    (:mod:`buildbot_stats.cli.interrupt`)."""
    with SignalGuard(f"{PROG} {command}") as guard:
        return _run(command, func, args, argv, guard)


def _run(command, func, args, argv, guard):
    try:
        return func(*args) or EXIT_OK
    except (CliError, StoreError) as e:
        return fail(command, str(e))
    except BrokenPipeError:
        silenceStdout()
        return EXIT_OK
    except OSError as e:  # a file, a permission, a full disk: the user's to fix
        return fail(command, describeOSError(e))
    except sqlite3.OperationalError as e:  # a store locked, damaged or gone under us
        return fail(command, f"the store cannot be read: {e}")
    except KeyboardInterrupt:
        print(f"{PROG} {command}: interrupted", file=sys.stderr)
        return guard.exitStatus() if guard.signum is not None else EXIT_INTERRUPTED
    except Exception as e:
        return unexpected(command, argv, e)


def main(argv=None, out=None):
    """Run ``buildbot-stats`` with ``argv`` (default: the command line); the exit status.

    ``out`` is where a command's output goes (default: standard output); errors go to
    standard error."""
    out = sys.stdout if out is None else out
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = makeParser().parse_args(argv)
    except SystemExit as e:  # --help, --version, a usage error (already printed)
        return e.code
    return runCommand(args.command, args.func, args, out, argv=argv)


if __name__ == '__main__':
    sys.exit(main())
