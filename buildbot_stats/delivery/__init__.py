"""What every remote storage backend shares.

One module, one job:

* ``lineprotocol``: a point becomes one InfluxDB line (or a counted rejection)
* ``buffer``: encoded lines wait here, in chunks, bounded; the oldest go first when full
* ``retry``: the delivery options and the backoff between attempts
* ``sender``: one HTTP request per batch, its answer classified
* ``spool``: the chunks mirrored on disk, so a restart or a crash loses nothing
* ``writer``: ties them together: batches out, outcomes in, counters kept
"""
