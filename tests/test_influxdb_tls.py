"""HTTPS to InfluxDB: a local twisted.web TLS server with a certificate of our own CA."""

from __future__ import annotations

import datetime
import ipaddress
import os

from twisted.internet import defer
from twisted.internet import reactor
from twisted.internet import ssl
from twisted.trial import unittest
from twisted.web import resource
from twisted.web import server as webserver

from buildbot_stats import stats


def makeCertificates():
    """(CA certificate PEM, server key + certificate PEM for localhost and 127.0.0.1)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, key, signer, ca, sans=None):
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build('buildbot_stats test CA', 'buildbot_stats test CA', ca_key, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build('localhost', 'buildbot_stats test CA', key, ca_key, False,
                 [x509.DNSName('localhost'), x509.IPAddress(ipaddress.ip_address('127.0.0.1'))])
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ca.public_bytes(pem), key_pem + cert.public_bytes(pem)


class _Write(resource.Resource):
    isLeaf = True

    def __init__(self, bodies):
        super().__init__()
        self.bodies = bodies

    def render_POST(self, request):
        if request.path != b'/write':
            # the backend's series checks (/query): not this test's business
            request.setResponseCode(404)
            return b''
        self.bodies.append((request.path, request.content.read()))
        request.setResponseCode(204)
        return b''


class HTTPS(unittest.TestCase):
    timeout = 60

    def setUp(self):
        ca_pem, server_pem = makeCertificates()
        self.ca_file = os.path.abspath(self.mktemp())
        with open(self.ca_file, 'wb') as f:
            f.write(ca_pem)
        self.bodies = []
        cert = ssl.PrivateCertificate.loadPEM(server_pem)
        self.port = reactor.listenSSL(0, webserver.Site(_Write(self.bodies)), cert.options(),
                                      interface='127.0.0.1')
        self.addCleanup(self.port.stopListening)
        self.url = f'https://localhost:{self.port.getHost().port}'

    @defer.inlineCallbacks
    def writeThree(self, **options):
        backend = stats.InfluxStorageService(self.url, None, None, None, 'db', [], timeout=2.0,
                                             retry_interval=0.2, **options)
        yield backend.startService()
        for i in range(3):
            backend.postStatsValue({'v': i}, 'm', {'builder_name': 'b'}, 1000.0 + i)
        ended = yield backend.flush(timeout=3)
        counters = backend.counters.asDict()
        yield backend.stopService()
        return ended, counters

    @defer.inlineCallbacks
    def test_certificate_of_the_given_ca_is_trusted(self):
        ended, counters = yield self.writeThree(ca_file=self.ca_file)
        self.assertTrue(ended)
        self.assertEqual((counters['written'], counters['pending']), (3, 0))
        self.assertEqual(self.bodies, [(b'/write', b'm,builder_name=b v=0i 1000000000000\n'
                                                   b'm,builder_name=b v=1i 1001000000000\n'
                                                   b'm,builder_name=b v=2i 1002000000000')])

    @defer.inlineCallbacks
    def test_unknown_ca_is_refused_and_the_points_kept(self):
        # the system's trust store: not our CA; the stop drops what it holds at once (a
        # stop_timeout of 0) instead of trying for 10 s more to reach a refused server
        ended, counters = yield self.writeThree(stop_timeout=0)
        self.assertFalse(ended)
        self.assertEqual(self.bodies, [])
        self.assertEqual(counters['written'], 0)
        self.assertGreaterEqual(counters['retries'], 1)
        # kept (then dropped for lack of time only at stop, counted), never written unverified
        self.assertEqual(counters['added'], 3)

    @defer.inlineCallbacks
    def test_verify_ssl_false_accepts_any_certificate(self):
        ended, counters = yield self.writeThree(verify_ssl=False)
        self.assertTrue(ended)
        self.assertEqual(counters['written'], 3)
        self.assertEqual(len(self.bodies), 1)
