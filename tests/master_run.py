"""Run one Buildbot master in the foreground (twistd), optionally with a short master
liveness: the process of :class:`tests.masterprocess.MasterProcess`.

Usage: ``python tests/master_run.py BASEDIR [HEARTBEAT_SECONDS EXPIRE_SECONDS]``

Buildbot 4 tells a dead master by its heartbeat: every master writes ``last_active`` in the
``masters`` table every 60 s and, on the same timer, marks inactive every master whose
``last_active`` is older than ``buildbot.data.masters.EXPIRE_MINUTES`` (10). Marking one
inactive finishes its unfinished builds as RETRY and unclaims its build requests, so that
another master can run them. A multi-master test cannot wait 10 minutes: given
HEARTBEAT_SECONDS and EXPIRE_SECONDS, this runs the same code with that heartbeat and expiry.
Nothing else is changed.
"""

import os
import sys


def shortenLiveness(heartbeat, expire):
    from buildbot import master
    from buildbot.data import masters

    masters.EXPIRE_MINUTES = expire / 60.0
    init = master.BuildMaster.__init__

    def shortHeartbeat(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.masterHeartbeatService.step = heartbeat

    master.BuildMaster.__init__ = shortHeartbeat


def main():
    basedir = sys.argv[1]
    if len(sys.argv) > 2:
        shortenLiveness(float(sys.argv[2]), float(sys.argv[3]))

    from twisted.scripts.twistd import run

    os.chdir(basedir)
    sys.argv = ['twistd', '--nodaemon', '--no_save', '--pidfile=', '-y', 'buildbot.tac']
    run()


if __name__ == '__main__':
    main()
