"""The small pieces of HTML every part of the page writes with.

Every text from a store (builder, step, series names...) goes through :func:`e` (or
``urlencode`` in a URL) before it reaches the HTML.
"""

from __future__ import annotations

import datetime
import html

e = html.escape


def fullTime(seconds):
    """``2026-11-29 20:40:06`` (UTC)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S")
