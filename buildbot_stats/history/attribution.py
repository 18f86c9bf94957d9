"""What Buildbot knows of a change point (buildbot_stats.reading.changes' records): the first
build after it (its link, revision and branch) and the changes (commits) that came in with
it, from the data API (on the reactor; Buildbot's database thread does the reads)."""

from __future__ import annotations

from twisted.internet import defer

#: Builds whose changes (commits) are read for one change point, at most.
MAX_ATTRIBUTED_BUILDS = 20
#: Changes (commits) named in a change point, at most.
MAX_COMMITS = 20


@defer.inlineCallbacks
def attribute(master, record):
    """Fill ``record`` in from Buildbot's data API: the first build after the change
    (its link, revision, branch) and the changes (commits) of the builds after the last
    one before it: authors, comments."""
    data = master.data
    builders = yield data.get(('builders',))
    ids = {b['name']: b['builderid'] for b in builders or []}
    builderid = ids.get(record['builder'])
    number = record['build_number']
    if builderid is None or number is None:
        return
    base = getattr(getattr(master, 'config', None), 'buildbotURL', None) or ''
    record['url'] = f"{base}#/builders/{builderid}/builds/{number}"
    build = yield data.get(('builders', builderid, 'builds', number))
    if build:
        props = yield data.get(('builds', build['buildid'], 'properties'))
        props = props or {}
        record['revision'] = textOf(propertyValue(props, 'got_revision')
                                    or propertyValue(props, 'revision'))
        record['branch'] = textOf(propertyValue(props, 'branch'))
    first = number if record['last_build_number'] is None else record['last_build_number'] + 1
    first = max(first, number - MAX_ATTRIBUTED_BUILDS + 1)
    commits = {}
    for n in range(first, number + 1):
        for change in (yield data.get(('builders', builderid, 'builds', n, 'changes'))) or []:
            commits.setdefault(change['changeid'], change)
    listed = [commits[k] for k in sorted(commits)][-MAX_COMMITS:]
    record['changes'] = len(commits)
    record['authors'] = sorted({c.get('author') or '' for c in listed} - {''})
    record['comments'] = [(c.get('comments') or '').strip() for c in listed]
    if not record.get('revision') and listed:
        record['revision'] = listed[-1].get('revision')
    if not record.get('branch') and listed:
        record['branch'] = listed[-1].get('branch')


def propertyValue(props, name):
    value = props.get(name)
    return value[0] if isinstance(value, (list, tuple)) and value else value


def textOf(value):
    """A revision or branch as text: one codebase's, or ``codebase:value`` of several."""
    if value is None or value == '':
        return None
    if isinstance(value, dict):
        return ' '.join(f"{k}:{v}" for k, v in sorted(value.items()) if v) or None
    return str(value)
