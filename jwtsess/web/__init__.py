"""The Starlette layer: middleware, guards, auth routes, cookies and error answers."""

from .binding import dpop_binding as dpop_binding
from .config import WebConfig as WebConfig
from .guards import Requirement as Requirement
from .guards import add_exception_handlers as add_exception_handlers
from .guards import auth_error_handler as auth_error_handler
from .guards import require_auth as require_auth
from .guards import require_role as require_role
from .live import LiveConnections as LiveConnections
from .middleware import JWTAuthMiddleware as JWTAuthMiddleware
from .middleware import JWTUser as JWTUser
from .oauth import OAuthConfig as OAuthConfig
from .oauth import OAuthEndpoints as OAuthEndpoints
from .responses import clear_session_cookies as clear_session_cookies
from .responses import error_response as error_response
from .responses import set_session_cookies as set_session_cookies
from .routes import auth_routes as auth_routes
from .routes import client_metadata as client_metadata
from .routes import jwks_route as jwks_route
from .routes import read_body as read_body
from .routes import read_json_object as read_json_object

__all__ = [
    "JWTAuthMiddleware",
    "JWTUser",
    "LiveConnections",
    "OAuthConfig",
    "OAuthEndpoints",
    "Requirement",
    "WebConfig",
    "add_exception_handlers",
    "auth_error_handler",
    "auth_routes",
    "clear_session_cookies",
    "client_metadata",
    "dpop_binding",
    "error_response",
    "jwks_route",
    "read_body",
    "read_json_object",
    "require_auth",
    "require_role",
    "set_session_cookies",
]
