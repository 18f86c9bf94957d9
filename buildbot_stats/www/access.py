"""Who may see the page: the same rule as Buildbot's REST API for the builds.

A wsgi dashboard is outside Buildbot's REST resource, so Buildbot does not check its
requests; the page does it itself, from the WSGI thread: it reads the user of the
session cookie exactly as Buildbot's ``BuildbotSession`` does (a JWT signed with the site's
session secret) and asks the master's ``Authz`` whether that user may ``get`` the
``builds`` endpoint (what ``/api/v2/builds`` asks), on the reactor thread.
"""

from __future__ import annotations

from http.cookies import CookieError
from http.cookies import SimpleCookie

COOKIE_PREFIXES = ('TWISTED_SESSION', 'TWISTED_SECURE_SESSION')

#: The endpoint whose ``get`` permission the page requires.
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


def isAllowed(master, cookie_header):
    """True when the user of the request may see the builds. Blocks: call it from a
    thread other than the reactor's (the WSGI thread pool)."""
    from twisted.internet.threads import blockingCallFromThread

    from buildbot.www.authz import Forbidden

    www = getattr(master, 'www', None)
    authz = getattr(www, 'authz', None)
    if authz is None:
        return False  # no web server configuration: nothing to compare with, refuse
    user = userInfo(www, cookie_header)
    try:
        blockingCallFromThread(master.reactor, authz.assertUserAllowed, ENDPOINT, 'get', {},
                               user)
    except Forbidden:
        return False
    return True
