"""What every panel of the Statistics page is: its section, its queries, its captures."""

from __future__ import annotations


class Panel:
    #: the section's id (``<section id=...>``, also ``data-panel`` of its "missing" text)
    id = None
    #: the section's heading
    title = None
    #: ``{data key: reader method}``: the queries the panel needs, each called as
    #: ``method(builder, start, end)``; panels that name the same key share one answer
    reads = {}
    #: the capture classes (names, base classes count) that feed the panel
    captured_by = ()
    #: the master.cfg code that adds such a capture, for the "not captured" text
    add_line = None

    def render(self, page, data):
        """The section's HTML (without the heading) from ``data`` (every key read)."""
        raise NotImplementedError
