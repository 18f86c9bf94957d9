"""Analyses of the read side: pure functions over plain sequences (no I/O, no clock), so that
each is tested on generated series with known answers. The readers feed them; the page, the
CLI and /metrics show what they find."""
