"""The server fixtures themselves: start, write, read back exactly, restart keeping port and data."""

import os
import subprocess
import sys

from twisted.trial import unittest

from tests import servers

from tests.servers import HTTPError
from tests.servers import InfluxDB1Server
from tests.servers import PostgreSQLServer
from tests.servers import PrometheusServer
from tests.servers import ServerError
from tests.servers import VictoriaMetricsServer
from tests.servers import quote_ident

TS = 1_700_000_000_123_456_789  # a nanosecond timestamp whose every digit matters


class FreePortTest(unittest.TestCase):
    """Two test processes (the two ``trial -j2`` workers) never get the same port."""

    PICKS = 300  # each side; without the locks ~7 of 300 x 300 would clash in 12,768 ports

    def test_no_port_of_another_live_process(self):
        child = subprocess.Popen(
            [sys.executable, '-c', 'import sys\n'
             'from tests.servers import free_port\n'
             f'print(*[free_port() for _ in range({self.PICKS})], flush=True)\n'
             'sys.stdin.read()\n'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.addCleanup(lambda: child.poll() is None and child.kill())
        theirs = {int(p) for p in child.stdout.readline().split()}
        self.assertEqual(len(theirs), self.PICKS)
        mine = {servers.free_port() for _ in range(self.PICKS)}
        self.assertEqual(len(mine), self.PICKS)  # never the same twice in one process
        self.assertEqual(mine & theirs, set())
        for port in mine | theirs:
            self.assertIn(port, servers._PORTS)
        # the child's locks end with it: its ports may be handed out again
        port = min(theirs)
        self.assertFalse(servers._lockPort(port))
        child.communicate('')
        self.assertTrue(servers._lockPort(port))


class InfluxDB1ServerTest(unittest.TestCase):
    def setUp(self):
        self.server = InfluxDB1Server.shared()

    def test_shared_is_one_server(self):
        self.assertIs(InfluxDB1Server.shared(), self.server)
        self.assertTrue(self.server.running)

    def test_loopback_ports_and_config(self):
        s = self.server
        self.assertEqual(s.url, f'http://127.0.0.1:{s.port}')
        self.assertNotEqual(s.port, s.rpc_port)
        with open(s.config_path, encoding='utf-8') as f:
            config = f.read()
        self.assertIn(f'bind-address = "127.0.0.1:{s.rpc_port}"', config)
        self.assertIn(f'bind-address = "127.0.0.1:{s.port}"', config)
        self.assertIn('reporting-disabled = true', config)

    def test_write_and_read_exact(self):
        s = self.server
        s.create_database('fixture')
        s.write_lines('fixture', [f'm,host=a i=-5i,f=0.1,s="x y",b=true {TS}',
                                  f'm,host=b i=9223372036854775807i {TS + 1}'])
        self.assertEqual(s.points('fixture', 'm'), [
            {'time': TS, 'host': 'a', 'i': -5, 'f': 0.1, 's': 'x y', 'b': True},
            {'time': TS + 1, 'host': 'b', 'i': 9223372036854775807},
        ])
        self.assertEqual(s.field_types('fixture', 'm'),
                         {'i': 'integer', 'f': 'float', 's': 'string', 'b': 'boolean'})
        self.assertEqual(s.tag_keys('fixture', 'm'), ['host'])
        self.assertIn('m', s.measurements('fixture'))
        self.assertEqual(s.read_points('fixture', 'm'), [
            {'time': TS, 'tags': {'host': 'a'}, 'fields': {'i': -5, 'f': 0.1, 's': 'x y', 'b': True}},
            {'time': TS + 1, 'tags': {'host': 'b'}, 'fields': {'i': 9223372036854775807}},
        ])

    def test_unquotable_names_read_back(self):
        # NUL and CR cannot appear in a quoted InfluxQL identifier; the regex still finds them
        s = self.server
        s.create_database('ctl')
        s.write_lines('ctl', [f'\ra\x00b,f=tag f=1i {TS}'])
        self.assertEqual(s.measurements('ctl'), ['\ra\x00b'])
        self.assertEqual(s.read_points('ctl', '\ra\x00b'),
                         [{'time': TS, 'tags': {'f': 'tag'}, 'fields': {'f': 1}}])
        self.assertEqual(s.field_types('ctl', '\ra\x00b'), {'f': 'integer'})
        self.assertEqual(s.tag_keys('ctl', '\ra\x00b'), ['f'])
        self.assertEqual(s.points('ctl', 'a'), [])  # anchored: no partial match

    def test_awkward_measurement_name_is_queryable(self):
        s = self.server
        s.create_database('awkward')
        s.write_lines('awkward', [f'a\\ b\\,c"d\\\\e f=1i {TS}'])
        self.assertEqual(s.measurements('awkward'), ['a b,c"d\\\\e'])
        self.assertEqual(s.points('awkward', 'a b,c"d\\\\e'), [{'time': TS, 'f': 1}])
        self.assertEqual(quote_ident('a"b\\c\nd'), '"a\\"b\\\\c\\nd"')

    def test_bad_write_raises_with_server_message(self):
        s = self.server
        s.create_database('bad')
        s.create_database('x')
        with self.assertRaises(HTTPError) as cm:
            s.write_lines('bad', 'm 1700000000')
        self.assertEqual(cm.exception.status, 400)
        self.assertIn('invalid field format', cm.exception.body)
        status, _ = s.write_raw('bad', 'm f=1i 1')
        self.assertEqual(status, 204)

    def test_bad_query_raises(self):
        with self.assertRaises(ServerError):
            self.server.query('SELECT FROM', db='x')


class InfluxDB1RestartTest(unittest.TestCase):
    def setUp(self):
        self.server = InfluxDB1Server.start_new()
        self.addCleanup(self.server.cleanup)

    def test_restart_keeps_port_and_data(self):
        s = self.server
        port, url = s.port, s.url
        s.create_database('keep')
        s.write_lines('keep', f'm f=1.5 {TS}')
        s.stop()
        self.assertFalse(s.running)
        with self.assertRaises(OSError):
            s.query('SHOW DATABASES')
        s.start()
        self.assertEqual((s.port, s.url), (port, url))
        self.assertEqual(s.points('keep', 'm'), [{'time': TS, 'f': 1.5}])
        # a crash (SIGKILL) keeps acknowledged writes too: they are in the WAL
        s.write_lines('keep', f'm f=2.5 {TS + 1000}')
        s.kill()
        s.start()
        self.assertEqual(s.points('keep', 'm'), [{'time': TS, 'f': 1.5},
                                                 {'time': TS + 1000, 'f': 2.5}])
        self.assertIsNotNone(s.start_seconds)  # measured, for the docs; not asserted

    def test_cleanup_removes_everything(self):
        s = self.server
        pid = s.process.pid
        s.cleanup()
        self.assertFalse(s.running)
        self.assertFalse(os.path.exists(s.basedir))
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)

    def test_pause_resume(self):
        s = self.server
        s.pause()
        with self.assertRaises(OSError):  # a timeout: the port is open, nothing answers
            import tests.servers as servers
            servers._http('GET', s.url + '/ping', timeout=0.5)
        s.resume()
        s.create_database('after')
        self.assertIn('after', str(s.query('SHOW DATABASES')))

    def test_missing_binary_skips_naming_the_package(self):
        self.patch(InfluxDB1Server, 'binary', '/nonexistent/influxd')
        with self.assertRaises(unittest.SkipTest) as cm:
            InfluxDB1Server.start_new()
        self.assertIn("Debian package 'influxdb'", str(cm.exception))
        self.patch(VictoriaMetricsServer, 'binary', '/nonexistent/victoria-metrics')
        with self.assertRaises(unittest.SkipTest) as cm:
            VictoriaMetricsServer.require()
        self.assertIn("Debian package 'victoria-metrics'", str(cm.exception))
        self.patch(PrometheusServer, 'binary', '/nonexistent/prometheus')
        with self.assertRaises(unittest.SkipTest) as cm:
            PrometheusServer.require()
        self.assertIn("Debian package 'prometheus'", str(cm.exception))

    def test_failed_start_reports_log(self):
        s = self.server
        other = InfluxDB1Server()
        self.addCleanup(other.cleanup)
        other.port = s.port  # already taken: influxd must exit, and we must say why
        with self.assertRaises(ServerError) as cm:
            other.start()
        self.assertIn('address already in use', str(cm.exception))
        self.assertFalse(other.running)


class VictoriaMetricsServerTest(unittest.TestCase):
    def setUp(self):
        self.server = VictoriaMetricsServer.start_new()
        self.addCleanup(self.server.cleanup)

    def test_write_read_restart(self):
        s = self.server
        port = s.port
        s.write_lines([f'm,host=a f=1.5,i=7i {TS}'], db='stats')
        expected = [
            ({'__name__': 'm_f', 'db': 'stats', 'host': 'a'}, TS // 1_000_000, 1.5),
            ({'__name__': 'm_i', 'db': 'stats', 'host': 'a'}, TS // 1_000_000, 7),
        ]
        self.assertEqual(s.samples(), expected)
        s.stop()
        s.start()
        self.assertEqual(s.port, port)
        self.assertEqual(s.samples(), expected)
        self.assertEqual(s.samples('{__name__="m_i"}'), expected[1:])


class PostgreSQLServerTest(unittest.TestCase):
    def setUp(self):
        self.server = PostgreSQLServer.start_new(database='fixture')
        self.addCleanup(self.server.cleanup)

    def test_query_restart_keeps_port_and_data_cleanup(self):
        s = self.server
        port, url = s.port, s.url
        self.assertEqual(url, f'postgresql+psycopg2://postgres@127.0.0.1:{port}/fixture')
        s.query('CREATE TABLE t (n integer)')
        s.query('INSERT INTO t VALUES (42) RETURNING n')
        s.stop()
        self.assertFalse(s.running)
        s.start()
        self.assertEqual((s.port, s.url), (port, url))
        self.assertEqual(s.query('SELECT n FROM t'), [(42,)])
        pid = s.process.pid
        s.cleanup()
        self.assertFalse(os.path.exists(s.basedir))
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)

    def test_missing_binary_skips_naming_the_package(self):
        self.patch(PostgreSQLServer, 'binary', '/nonexistent/initdb')
        with self.assertRaises(unittest.SkipTest) as cm:
            PostgreSQLServer.require()
        self.assertIn("Debian package 'postgresql'", str(cm.exception))
