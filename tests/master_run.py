"""Run one Buildbot master in the foreground (twistd), with a short master liveness.

Usage: ``python tests/multimaster_run.py HEARTBEAT_SECONDS EXPIRE_SECONDS BASEDIR``

Buildbot 4 tells a dead master by its heartbeat: every master writes ``last_active`` in the
``masters`` table every 60 s and, on the same timer, marks inactive every master whose
``last_active`` is older than ``buildbot.data.masters.EXPIRE_MINUTES`` (10). Marking one
inactive finishes its unfinished builds as RETRY and unclaims its build requests, so that
another master can run them. A test cannot wait 10 minutes: this runs the same code with a
heartbeat of HEARTBEAT_SECONDS and an expiry of EXPIRE_SECONDS. Nothing else is changed.
"""

import os
import sys


def main():
    heartbeat, expire, basedir = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]

    from buildbot import master
    from buildbot.data import masters

    masters.EXPIRE_MINUTES = expire / 60.0
    init = master.BuildMaster.__init__

    def shortHeartbeat(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.masterHeartbeatService.step = heartbeat

    master.BuildMaster.__init__ = shortHeartbeat

    from twisted.scripts.twistd import run

    os.chdir(basedir)
    sys.argv = ['twistd', '--nodaemon', '--no_save', '--pidfile=', '-y', 'buildbot.tac']
    run()


if __name__ == '__main__':
    main()
