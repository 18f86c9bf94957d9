from setuptools import find_packages
from setuptools import setup

# Every public class is also reachable as buildbot.plugins.util.<Name>.
PLUGINS = [
    'Capture', 'CaptureBuildDuration', 'CaptureBuildDurationAllBuilders', 'CaptureBuildEndTime',
    'CaptureBuildEndTimeAllBuilders', 'CaptureBuildStartTime', 'CaptureBuildStartTimeAllBuilders',
    'CaptureData', 'CaptureDataAllBuilders', 'CaptureProperty', 'CapturePropertyAllBuilders',
    'InMemoryStorageService', 'StatsService', 'StatsStepMixin', 'StatsStorageBase',
    'CaptureBuildResults', 'CaptureQueueTimes', 'CaptureStepTimes', 'CaptureTestResults',
    'CaptureTestHistory', 'JUnitResults',
    'InfluxStorageService',
    'SQLiteStorageService',
    'PrometheusStorageService',
    'Regressions',
]

WWW = ['buildbot-www>=4.0', 'buildbot-wsgi-dashboards>=4.0', 'flask']
PROMETHEUS = ['prometheus-client']
# change detection: Apache Otava (only otava.analysis is imported; it brings numpy, scipy)
REGRESSIONS = ['apache-otava']

with open('README.rst', encoding='utf-8') as f:
    long_description = f.read()

setup(
    name='buildbot_stats',
    version='0.1.0',
    description='Build statistics from Buildbot into InfluxDB, SQLite and charts',
    long_description=long_description,
    long_description_content_type='text/x-rst',
    license='GPL-2.0-only',
    packages=find_packages(exclude=['tests', 'tests.*']),
    python_requires='>=3.9',
    install_requires=[
        'buildbot>=4.0',
        'buildbot-worker>=4.0',  # buildbot-stats demo runs a real worker
        'twisted[tls]',  # https to InfluxDB (pyOpenSSL, service_identity)
        'treq',
        'tqdm',  # progress bar of buildbot-stats backfill
        # stats.JUnitResults reads test reports with it (pure Python, no dependency)
        'junitparser>=3.1',
        'fastdigest',  # the quantile sketches of the embedded store's rollups (Rust, no deps)
        'zope.interface',
    ],
    extras_require={
        # the Statistics page in Buildbot's web UI
        'www': WWW,
        # the /metrics endpoint
        'prometheus': PROMETHEUS,
        # change detection: what got slower, and since which build (docs/regressions.rst)
        'regressions': REGRESSIONS,
        # influxdb: the client Buildbot's own statistics module needs; the benchmarks (and
        # their smoke test) run that module side by side with ours. Not used by the package.
        # selenium drives Debian's chromium; autobahn and psycopg2 run Buildbot's multi-master
        # set-up (wamp MQ, PostgreSQL). ruptures: the change detection benchmark compares
        # Otava with it. pytest: the integration test's build runs a real pytest suite on
        # the worker.
        'test': ['hypothesis', 'influxdb', 'selenium', 'autobahn', 'psycopg2-binary', 'sphinx',
                 'ruptures', 'pytest'] + WWW + PROMETHEUS + REGRESSIONS,
    },
    entry_points={
        'buildbot.util': [f'{n} = buildbot_stats.stats:{n}' for n in PLUGINS],
        # /metrics under Buildbot's web server: c['www']['plugins']['metrics'] = {}
        'buildbot.www': ['metrics = buildbot_stats.storage.prometheus.plugin:ep'],
        'console_scripts': ['buildbot-stats = buildbot_stats.cli.main:main'],
    },
    classifiers=[
        'Framework :: Twisted',
        'Programming Language :: Python :: 3',
        'Topic :: Software Development :: Build Tools',
    ],
)
