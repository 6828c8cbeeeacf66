"""An auto-refreshing client for jwtsess services: an ``httpx.Auth``.

``JWTSessAuth`` attaches the access token to every request of an
``httpx.Client`` or ``httpx.AsyncClient``, refreshes shortly before it expires
or once after a 401 (then retries once), and keeps the rotated refresh token
(``on_refresh`` can persist it). One refresh serves every request waiting for
it, in threads or tasks: a request that finds the tokens changed, or a refresh
finished, while it waited for the lock does not refresh again. The refresh is
sent by the auth flow itself, as ``POST /auth/refresh {"refresh_token": ...}``.

httpx is the optional extra ``jwtsess[client]``; ``import jwtsess`` never
imports this package. ``dpop_login`` / ``adpop_login`` sign in with a new DPoP
key and return the ``JWTSessAuth`` bound to it. Modules: ``tokens``
(``TokenState``, read from a token answer), ``failures`` (``RefreshFailed``),
``auth`` (``JWTSessAuth``, the flows), ``login`` (the DPoP logins).
Errors::

    JWTSessError
    └── RefreshFailed    refresh_failed   (.error: the server's code, or
                                           no_tokens / invalid_response / http_error)
"""

from .auth import JWTSessAuth as JWTSessAuth
from .failures import RefreshFailed as RefreshFailed
from .login import adpop_login as adpop_login
from .login import dpop_login as dpop_login
from .tokens import OnRefresh as OnRefresh
from .tokens import TokenState as TokenState

__all__ = ["JWTSessAuth", "OnRefresh", "RefreshFailed", "TokenState", "adpop_login", "dpop_login"]
