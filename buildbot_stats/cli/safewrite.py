"""The one way ``buildbot-stats`` writes a file: never over a store, never half a file.

Every file the command writes (the HTML report, an export, the demo's files) is written to a
temporary file in the target's own directory, flushed to disk, then renamed over the target
with :func:`os.replace`. A reader sees the old file or the new one, never a part; when
anything fails on the way (a full disk, a store that turns out to be damaged halfway through
an export, Ctrl-C), the temporary file is removed and an existing target is untouched.

A target that resolves to the store being read, or to the files SQLite keeps beside it
(``-wal``, ``-shm``, ``-journal``), is refused before anything is opened: overwriting any of
them would destroy the statistics a master has collected. So is any existing SQLite
database (another master's store, Buildbot's ``state.sqlite``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat

from buildbot_stats.cli import interrupt
from buildbot_stats.cli.common import CliError
from buildbot_stats.storage.sqlite.schema import looksLikeSQLite

# SQLite's files beside a database (write-ahead log, its index, the rollback journal)
STORE_SIDE_FILES = ('', '-wal', '-shm', '-journal')
# the temporary file: hidden, named after its target, removed on any failure
TEMP_SUFFIX = '.buildbot-stats-tmp'


def storeFiles(store):
    """``[(path, suffix), ...]``: every path whose content belongs to ``store``, the file
    and its side files, by the name given and by the name it resolves to (SQLite keeps the
    side files beside the resolved file)."""
    return [(base + suffix, suffix) for base in (store, os.path.realpath(store))
            for suffix in STORE_SIDE_FILES]


def _sameFile(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet)
        return False


def checkNotStore(target, store, option=''):
    """Raise :class:`CliError` when ``target`` is ``store`` or one of its side files, by any
    name: a symbolic link, ``./``, ``..``, a hard link."""
    real = os.path.realpath(target)
    for path, suffix in storeFiles(store):
        if real == os.path.realpath(path) or _sameFile(target, path):
            what = f"the {suffix} file of the store {store}" if suffix else f"the store {store}"
            raise CliError(f"{_describe(option, target)}: is {what}; writing it would destroy "
                           "the statistics, choose another file")


def _describe(option, target):
    return f"{option} {target}" if option else target


def checkOutput(target, option='', protect=None, hint="choose another file"):
    """Raise :class:`CliError` unless ``target`` can be written as an output: not the store
    ``protect`` nor its side files, not a directory nor an SQLite database, in a directory
    that exists and this user may write. Commands call it before reading anything;
    :func:`atomicOpen` again. Returns the path to write: ``target`` with symbolic links
    resolved. ``hint``: what a message of a directory that cannot be written suggests."""
    name = _describe(option, target)
    if protect is not None:
        checkNotStore(target, protect, option)
    # write through a symbolic link: the link stays, the file it names is replaced
    real = os.path.realpath(target)
    if os.path.isdir(real):
        raise CliError(f"{name}: is a directory; give a file name")
    if looksLikeSQLite(real):
        # another master's store, Buildbot's state.sqlite: never an output
        raise CliError(f"{name}: is an SQLite database; it is not overwritten, choose "
                       "another file")
    directory = os.path.dirname(real)
    if not os.path.isdir(directory):
        missing = "not a directory" if os.path.exists(directory) else "no such directory"
        raise CliError(f"{name}: cannot write it: {directory}: {missing}")
    if not os.access(directory, os.W_OK | os.X_OK, effective_ids=os.access in
                     os.supports_effective_ids):
        # a backup, a read-only mount, a master's directory read by another user
        raise CliError(f"{name}: cannot write it: {directory}: permission denied; {hint}")
    return real


@contextlib.contextmanager
def atomicOpen(target, option='', protect=None, encoding='utf-8', newline=None):
    """A text file to write that becomes ``target`` when the ``with`` block ends cleanly.

    :param option: how the user named the target (``'--html'``), for messages
    :param protect: a store path: refuse a ``target`` that is the store or its side files
    Raises :class:`CliError` (one line) for a target that cannot be written; on any
    exception the temporary file is removed and ``target`` is left as it was.
    """
    name = _describe(option, target)
    real = checkOutput(target, option, protect)
    directory = os.path.dirname(real)
    tmp = os.path.join(directory,
                       f".{os.path.basename(real)[:100]}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        # 0o666 less the umask, as open() would make a new file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise CliError(f"{name}: cannot write it: {e.strerror}") from None
    def removeTmp():
        with contextlib.suppress(OSError):
            os.unlink(tmp)

    try:
        # a process ended by a second Ctrl-C, or one that did not stop in time, leaves
        # no temporary file either (cli.interrupt)
        with interrupt.onForcedExit(removeTmp):
            try:
                with os.fdopen(fd, 'w', encoding=encoding, newline=newline) as f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
                with contextlib.suppress(FileNotFoundError):
                    # an existing file keeps its permissions
                    os.chmod(tmp, stat.S_IMODE(os.stat(real).st_mode))
                os.replace(tmp, real)
            except OSError as e:
                raise CliError(f"{name}: cannot write it: {e.strerror or e}") from None
    except BaseException:
        removeTmp()
        raise


def writeText(target, text, option='', protect=None):
    """Write ``text`` (UTF-8) to ``target`` through :func:`atomicOpen`."""
    with atomicOpen(target, option, protect=protect) as f:
        f.write(text)
