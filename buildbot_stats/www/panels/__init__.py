"""The panels of the Statistics page, one module each, in the order the page shows them.

A panel computes its model from the reader through the view's one
:class:`~buildbot_stats.www.panels.base.Query` (:func:`buildbot_stats.www.page.collect`),
says which captures feed it (to tell "not captured" from "no data"), and renders its
section (the page) or its lines (``buildbot-stats report``) from that model. A new panel is
a module here and a line in :data:`PANELS`.
"""

from buildbot_stats.www.panels.builders import BuildersPanel
from buildbot_stats.www.panels.changes import ChangesPanel
from buildbot_stats.www.panels.custom import CustomPanel
from buildbot_stats.www.panels.durations import DurationsPanel
from buildbot_stats.www.panels.queue import QueuePanel
from buildbot_stats.www.panels.results import ResultsPanel
from buildbot_stats.www.panels.steps import StepsPanel
from buildbot_stats.www.panels.testcases import TestCasesPanel
from buildbot_stats.www.panels.tests import TestsPanel

#: The page's panels, top to bottom.
PANELS = (BuildersPanel(), ChangesPanel(), DurationsPanel(), ResultsPanel(), QueuePanel(),
          StepsPanel(), TestsPanel(), TestCasesPanel(), CustomPanel())

__all__ = ['PANELS']
