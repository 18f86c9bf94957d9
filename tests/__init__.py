import warnings

# Importing buildbot.test turns every warning into an error. These come from the libraries
# pip picks today, not from our code, and would fail every test that starts a real master
# (the first two) or makes an HTTPS connection (the last two):
# - alembic >= 1.16 warns that Buildbot's migration config lacks ``path_separator``;
# - Twisted 26.10 deprecates ssl.ProtocolNegotiationSupport, which Buildbot still touches;
# - pyOpenSSL 26 deprecates the X509/PKey objects Twisted's TLS code still hands it.
# We filter exactly these messages rather than pin old releases.
import buildbot.test  # noqa: F401  (sets the error filters that we amend below)

warnings.filterwarnings('ignore', message='No path_separator found', category=DeprecationWarning)
warnings.filterwarnings(
    'ignore', message='.*ProtocolNegotiationSupport was deprecated', category=DeprecationWarning
)
warnings.filterwarnings('ignore', message='Passing pyOpenSSL (X509|PKey) objects is deprecated',
                        category=DeprecationWarning)
