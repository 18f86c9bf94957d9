"""Writes the two dashboards of this directory (run it from the repository root after a
change: python dashboards/grafana/make_dashboards.py). The JSON files are what users import."""

import json

DS = {"type": "influxdb", "uid": "${datasource}"}


def dsVar():
    return {"name": "datasource", "label": "Data source", "type": "datasource",
            "query": "influxdb", "refresh": 1, "hide": 0, "current": {}}


def queryVar(name, label, query, regex="", multi=True, include_all=True):
    v = {"name": name, "label": label, "type": "query", "datasource": DS,
         "query": query, "definition": query, "regex": regex, "refresh": 2,
         "multi": multi, "includeAll": include_all, "sort": 1, "hide": 0,
         "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all
         else {}}
    return v


def target(query, ref="A", fmt="time_series", alias=None):
    t = {"refId": ref, "datasource": DS, "query": query, "rawQuery": True,
         "resultFormat": fmt}
    if alias:
        t["alias"] = alias
    return t


class Board:
    def __init__(self):
        self.panels, self.y, self.x, self.next_id = [], 0, 0, 1

    def add(self, kind, title, targets, w=12, h=8, unit=None, description="", extra=None):
        if self.x + w > 24:
            self.x, self.y = 0, self.y + h
        p = {"id": self.next_id, "type": kind, "title": title, "description": description,
             "datasource": DS, "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
             "targets": targets,
             "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
             "options": {}}
        if kind == "timeseries":
            p["options"] = {"tooltip": {"mode": "multi", "sort": "none"},
                            "legend": {"displayMode": "list", "placement": "bottom"}}
        if extra:
            p.update(extra)
        self.next_id += 1
        self.panels.append(p)
        self.x += w
        return p

    def row(self, title):
        self.x, self.y = 0, self.y + 8
        self.panels.append({"id": self.next_id, "type": "row", "title": title,
                            "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.next_id += 1
        self.y += 1


def changesAnnotation():
    """Where change detection found a change (docs/regressions.rst): the points of
    ``change_points``, as an annotation on every panel of the time range."""
    query = ('SELECT "summary", "builder_name", "series", "direction" FROM "change_points" '
             'WHERE "builder_name" =~ /^$builder$/ AND "withdrawn" = 0 AND $timeFilter')
    return {"name": "Changes", "datasource": DS, "enable": True, "hide": False,
            "iconColor": "#d62728", "query": query,
            "target": {"query": query, "rawQuery": True, "resultFormat": "table"},
            "textColumn": "summary", "tagsColumn": "builder_name,series,direction",
            "titleColumn": ""}


def dashboard(uid, title, description, board, variables):
    return {
        "uid": uid, "title": title, "description": description,
        "tags": ["buildbot", "buildbot_stats"], "timezone": "utc", "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "1m",
        "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": [changesAnnotation()]},
        "panels": board.panels,
    }


B = '"builder_name" =~ /^$builder$/'


def notExactly(word):
    """An InfluxQL (RE2: no look-ahead) regex of every key but ``word``."""
    alternatives = [word[:i] + f'[^{word[i]}].*' for i in range(len(word))]
    alternatives += [f'{word}.+', f'.{{0,{len(word) - 1}}}']
    return '/^(' + '|'.join(alternatives) + ')$/'


# Every field and tag but build_number: a field under StatsService(build_number='field'),
# it would be drawn as a line; a string tag in Buildbot's layout (docs/migration.rst)
NOT_BUILD_NUMBER = notExactly('build_number')
# The build number of a point in either form, as two columns (Grafana's table merges them)
BUILD_NUMBER_COLUMNS = ('"build_number"::tag AS "build (tag)", '
                        '"build_number"::field AS "build (field)"')

# -- 1. the page's panels, from the build statistics captures --------------------------------
b = Board()
b.add("table", "Builders: builds, median, p90, last",
      [target('SELECT count("duration") AS "builds", median("duration") AS "median", '
              'percentile("duration", 90) AS "p90", last("duration") AS "last" FROM "builds" '
              f'WHERE {B} AND $timeFilter GROUP BY "builder_name"', fmt="table")],
      w=12, unit="s", description="CaptureBuildResults: one row per builder. The page's "
      "table adds the trend (Theil-Sen slope), which InfluxQL cannot compute.")
b.add("timeseries", "Build duration: each build",
      [target(f'SELECT "duration" FROM "builds" WHERE {B} AND $timeFilter '
              'GROUP BY "builder_name"', alias="$tag_builder_name")],
      unit="s", description="CaptureBuildResults: the duration of every build, one point each.",
      extra={"fieldConfig": {"defaults": {"unit": "s", "custom": {
          "drawStyle": "points", "pointSize": 6}}, "overrides": []}})
b.add("timeseries", "Build duration: median and p90 per interval",
      [target('SELECT median("duration") AS "median", percentile("duration", 90) AS "p90" '
              f'FROM "builds" WHERE {B} AND $timeFilter GROUP BY time($__interval) fill(none)')],
      unit="s")
b.add("timeseries", "Success rate",
      [target('SELECT mean("success") * 100 FROM "builds" WHERE '
              f'{B} AND "result" =~ /^(success|warnings|failure|exception)$/ AND $timeFilter '
              'GROUP BY time($__interval), "builder_name" fill(none)',
              alias="$tag_builder_name")],
      unit="percent", description="Builds that passed (success, warnings) among those with "
      "a verdict (skipped, retried and cancelled builds are left out), per interval.")
b.add("bargauge", "Failures per builder",
      [target('SELECT count("result_code") FROM "builds" WHERE '
              f'{B} AND "result" =~ /^(failure|exception)$/ AND $timeFilter '
              'GROUP BY "builder_name"', alias="$tag_builder_name")],
      extra={"options": {"reduceOptions": {"calcs": ["sum"], "values": False},
                         "orientation": "horizontal", "displayMode": "basic"}})
b.add("timeseries", "Queue time: median and p90",
      [target('SELECT median("queue_time") AS "median", percentile("queue_time", 90) AS "p90" '
              f'FROM "build_requests" WHERE {B} AND $timeFilter '
              'GROUP BY time($__interval) fill(none)')],
      unit="s", description="CaptureQueueTimes: from the build request's submission to "
      "the build's start.")
b.add("table", "Slowest steps",
      [target('SELECT median("duration") AS "median", percentile("duration", 90) AS "p90", '
              'max("duration") AS "max", count("duration") AS "runs" FROM "steps" '
              f'WHERE {B} AND $timeFilter GROUP BY "builder_name", "step_name"', fmt="table")],
      unit="s", description="CaptureStepTimes; sort by the median column.",
      extra={"options": {"sortBy": [{"displayName": "median", "desc": True}]}})
b.add("timeseries", "Tests passed and failed",
      [target('SELECT sum("passed") AS "passed", sum("failed") AS "failed", '
              'sum("skipped") AS "skipped" FROM "tests" '
              f'WHERE {B} AND $timeFilter GROUP BY time($__interval) fill(none)')],
      description="CaptureTestResults: tests per interval, summed over the builds.")
b.row("Custom series: $series")
b.add("timeseries", "$series",
      [target(f'SELECT {NOT_BUILD_NUMBER} FROM /^$series$/ WHERE "builder_name" =~ '
              '/^$builder$/ AND $timeFilter')],
      w=12, description="Every numeric field of a property (CaptureProperty) or data "
      "(CaptureData, yieldMetricsValue) series.",
      extra={"repeat": "series", "repeatDirection": "h", "maxPerRow": 2})
# the build statistics measurements and the change points kept (docs/regressions.rst) are no
# custom series
NOT_CUSTOM = (r"/^(?!.*-build-times$)(?!(builds|build_requests|steps|tests|change_points)$)"
              r"(.*)$/")
page = dashboard(
    "buildbot-stats", "Buildbot statistics",
    "buildbot_stats' build statistics captures in InfluxDB 1.x (InfluxQL): the panels of the "
    "Statistics page in Buildbot's web UI.", b,
    [dsVar(),
     queryVar("builder", "Builder",
              'SHOW TAG VALUES FROM "builds" WITH KEY = "builder_name"'),
     queryVar("series", "Custom series", "SHOW MEASUREMENTS", regex=NOT_CUSTOM)])

# -- 2. the historical series of Buildbot's own module ----------------------------------------
h = Board()
h.add("timeseries", "Build duration",
      [target('SELECT "duration" FROM /^$builder-build-times$/ WHERE "duration" >= 0 AND '
              '$timeFilter GROUP BY "builder_name"', alias="$tag_builder_name")],
      w=24, unit="s", description="CaptureBuildDuration(AllBuilders): the duration field of "
      "<builder>-build-times (in the unit it was captured in, seconds by default).",
      extra={"fieldConfig": {"defaults": {"unit": "s", "custom": {
          "drawStyle": "points", "pointSize": 6}}, "overrides": []}})
h.add("timeseries", "Build duration: median and p90 per interval",
      [target('SELECT median("duration") AS "median", percentile("duration", 90) AS "p90" '
              'FROM /^$builder-build-times$/ WHERE "duration" >= 0 AND $timeFilter '
              'GROUP BY time($__interval) fill(none)')], unit="s")
h.add("timeseries", "Builds per interval",
      [target('SELECT count("duration") FROM /^$builder-build-times$/ WHERE "duration" >= 0 '
              'AND $timeFilter GROUP BY time($__interval), "builder_name" fill(none)',
              alias="$tag_builder_name")])
h.add("table", "Last builds: start and end times",
      # the points of start and end times only (a selected field of every point, as the
      # field build_number is, would bring the duration points too)
      [target(f'SELECT "start-time", "end-time", {BUILD_NUMBER_COLUMNS} '
              'FROM /^$builder-build-times$/ WHERE ("start-time" =~ /./ OR "end-time" =~ /./) '
              'AND $timeFilter ORDER BY time DESC LIMIT 50', fmt="table")], w=24,
      description="CaptureBuildStartTime / CaptureBuildEndTime: ISO 8601 strings. The build "
      "number is a tag in Buildbot's layout and a field under "
      "StatsService(build_number='field'): the table shows whichever the point has.",
      extra={"transformations": [
          {"id": "calculateField", "options": {
              "mode": "reduceRow", "alias": "build",
              "reduce": {"include": ["build (tag)", "build (field)"],
                         "reducer": "firstNotNull"}, "replaceFields": False}},
          {"id": "organize", "options": {
              "excludeByName": {"build (tag)": True, "build (field)": True}}}]})
h.row("Properties and data: $series")
h.add("timeseries", "$series",
      [target(f'SELECT {NOT_BUILD_NUMBER} FROM /^$series$/ WHERE $timeFilter')], w=12,
      description="CaptureProperty (fields name and value) and CaptureData (the fields given "
      "to yieldMetricsValue): every numeric field.",
      extra={"repeat": "series", "repeatDirection": "h", "maxPerRow": 2})
history = dashboard(
    "buildbot-stats-historical", "Buildbot statistics: historical series",
    "The series of Buildbot's own statistics module (and buildbot_stats' spec captures): "
    "<builder>-build-times, <builder>-<property>, <builder>-<data name>.", h,
    [dsVar(),
     queryVar("builder", "Builder", 'SHOW TAG VALUES WITH KEY = "builder_name"'),
     queryVar("series", "Property or data series",
              'SHOW MEASUREMENTS WITH MEASUREMENT =~ /^$builder-/',
              regex=r"/^(?!.*-build-times$)(.*)$/")])

for name, d in (("buildbot-stats-influxdb.json", page),
                ("buildbot-historical-influxdb.json", history)):
    with open(f"dashboards/grafana/{name}", "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
