"""The ``buildbot-stats`` command: demo, report and export (see docs/cli.rst)."""
