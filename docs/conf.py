project = 'buildbot_stats'
author = 'buildbot_stats developers'
release = '0.1.0'
extensions = ['sphinx.ext.autodoc']
exclude_patterns = ['_build']
html_theme = 'alabaster'
autodoc_member_order = 'bysource'
