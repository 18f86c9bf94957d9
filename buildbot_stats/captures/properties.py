"""Captures of build properties."""

from __future__ import annotations

from buildbot import config

from buildbot_stats.captures.base import BUILD_FINISHED
from buildbot_stats.captures.base import BuilderMatchMixin
from buildbot_stats.captures.base import Capture
from buildbot_stats.captures.base import CaptureError
from buildbot_stats.captures.base import checkBuilderName
from buildbot_stats.captures.base import checkCallback
from buildbot_stats.captures.base import compilePattern
from buildbot_stats.checks import shown
from buildbot_stats.lookups import then


def default_property_callback(props, property_name):
    """The property's value (``props`` maps a name to ``(value, source)``)."""
    return props[property_name][0]


class CapturePropertyBase(BuilderMatchMixin, Capture):
    """Base of the property captures. Not used directly."""

    uses = ('builder_names', 'properties')

    def __init__(self, property_name, callback=None, regex=False):
        owner = type(self).__name__
        checkCallback(owner, callback)
        if not isinstance(property_name, str) or not property_name:
            config.error(
                f"{owner}: property_name must be a non-empty string, got {shown(property_name)}"
            )
        self._property_name = property_name
        self._regex = regex
        self._pattern = compilePattern(owner, 'property_name', property_name) if regex else None
        super().__init__(BUILD_FINISHED, callback or default_property_callback)

    def describe(self):
        return (
            f"{type(self).__name__}(builder_name={self._builder_name!r}, "
            f"property_name={self._property_name!r})"
        )

    def writesSeries(self, series, builder_name=None):
        if builder_name is None or not series.startswith(f"{builder_name}-"):
            return False
        suffix = series[len(builder_name) + 1:]
        named = (self._pattern.match(suffix) is not None if self._regex
                 else suffix == self._property_name)
        return named and self.writesBuilder(builder_name)

    def consumer(self, routingKey, msg):
        return then(self.lookups.builder_names.lookup(msg['builderid']), self._consumeOf, msg)

    def _consumeOf(self, builder_name, msg):
        if not self.builderMatches(builder_name):
            return None
        return then(self.lookups.properties.lookup(msg['buildid']), self._capture, msg,
                    builder_name)

    def _capture(self, properties, msg, builder_name):
        if self._regex:
            names = sorted(pn for pn in properties if self._pattern.match(pn))
        else:
            names = [self._property_name]

        errors = []
        # one property that fails never hides the others
        for pn in names:
            try:
                value = self._callback(properties, pn)
            except KeyError:
                errors.append(f"property {pn!r} not found")
                continue
            except Exception as e:
                errors.append(f"callback raised {type(e).__name__}: {e} for property {pn!r}")
                continue
            self.writeBuildPoint(f"{builder_name}-{pn}", msg, builder_name,
                                 {"name": pn, "value": value}, msg['complete_at'])
        if errors:
            raise CaptureError(
                f"{self.describe()}: {'; '.join(errors)} in build #{msg.get('number')} of "
                f"builder {builder_name!r}"
            )


class CaptureProperty(CapturePropertyBase):
    """One build property (or every property matching a regex) of one builder's builds."""

    def __init__(self, builder_name, property_name, callback=None, regex=False):
        checkBuilderName(type(self).__name__, builder_name)
        self._builder_name = builder_name
        super().__init__(property_name, callback, regex)


class CapturePropertyAllBuilders(CapturePropertyBase):
    """:class:`CaptureProperty` for every builder."""


