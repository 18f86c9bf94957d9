"""Who may read the statistics: Buildbot's authz rule for the builds, or a token.

The Statistics page (a wsgi dashboard) and ``/plugins/metrics`` (a ``buildbot.www`` plugin)
are outside Buildbot's REST resource, so Buildbot does not check their requests; they do it
themselves, with one rule: the user of the request's session cookie (read exactly as
Buildbot's ``BuildbotSession`` does: a JWT signed with the site's session secret; anonymous
without one) must be allowed to ``get`` the ``builds`` endpoint by the master's ``Authz``
(what ``/api/v2/builds`` asks). A scraper has no session: ``/metrics`` also takes a token,
as ``Authorization: Bearer <token>`` or as the password of HTTP basic auth
(:func:`tokenOf`), compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from http.cookies import CookieError
from http.cookies import SimpleCookie

from twisted.internet import defer

COOKIE_PREFIXES = ('TWISTED_SESSION', 'TWISTED_SECURE_SESSION')

#: The endpoint whose ``get`` permission reading the statistics requires.
ENDPOINT = ('builds',)


def userInfo(www, cookie_header):
    """The ``user_info`` of the session cookie in ``cookie_header`` (anonymous when there
    is none, or it is expired or forged)."""
    import jwt

    from buildbot.www import auth

    secret = getattr(getattr(www, 'site', None), 'session_secret', None)
    if secret and cookie_header:
        try:
            cookies = SimpleCookie(cookie_header)
        except CookieError:
            cookies = {}
        for name, morsel in cookies.items():
            if not name.startswith(COOKIE_PREFIXES):
                continue
            # as auth.parse_user_info_from_token, without its traceback in the log for
            # every forged or expired cookie
            try:
                claims = jwt.decode(morsel.value, secret,
                                    algorithms=[auth.SESSION_SECRET_ALGORITHM])
                return claims['user_info']
            except (jwt.exceptions.PyJWTError, KeyError, TypeError):
                continue
    return auth.build_anonymous_user_info()


def isAnonymous(user):
    return bool(user.get('anonymous')) if isinstance(user, dict) else True


@defer.inlineCallbacks
def allowed(master, cookie_header):
    """A Deferred firing ``(allowed, user)``: whether the user of the request may see the
    builds. On the reactor thread."""
    from buildbot.www.authz import Forbidden

    www = getattr(master, 'www', None)
    authz = getattr(www, 'authz', None)
    user = userInfo(www, cookie_header)
    if authz is None:
        return False, user  # no web server configuration: nothing to compare with, refuse
    try:
        yield authz.assertUserAllowed(ENDPOINT, 'get', {}, user)
    except Forbidden:
        return False, user
    return True, user


def isAllowed(master, cookie_header):
    """True when the user of the request may see the builds. Blocks: call it from a
    thread other than the reactor's (the WSGI thread pool)."""
    from twisted.internet.threads import blockingCallFromThread

    ok, _ = blockingCallFromThread(master.reactor, allowed, master, cookie_header)
    return ok


def tokenOf(authorization):
    """The token of an ``Authorization`` header: ``Bearer <token>``, or the password of
    ``Basic <base64(user:password)>`` (any user name: Prometheus' ``basic_auth`` or a
    browser's prompt); None without one."""
    if not authorization:
        return None
    if isinstance(authorization, bytes):
        authorization = authorization.decode('latin-1')
    scheme, _, value = authorization.strip().partition(' ')
    value = value.strip()
    if scheme.lower() == 'bearer' and value:
        return value
    if scheme.lower() == 'basic' and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode('utf-8')
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(':')
        return password if sep and password else None
    return None


def sameToken(given, expected):
    """``given == expected``, in a time that does not tell how much of it was right."""
    if given is None or not expected:
        return False
    return hmac.compare_digest(given.encode('utf-8'), str(expected).encode('utf-8'))
