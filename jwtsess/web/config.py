"""WebConfig: how tokens travel over HTTP (headers, cookies, CSRF) and body limits.

Refresh rate limits are the Issuer's (``SessionPolicy``), shared by every entry point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    """Options shared by the middleware, the guards and the auth routes.

    :param realm: the ``realm`` of ``WWW-Authenticate`` challenges.
    :param secure: cookies are ``Secure`` and their names take the ``__Host-``
        / ``__Secure-`` prefixes. Turn off only for plain-http development.
    :param cookies: accept the access token from the access cookie (with a CSRF
        double-submit check on unsafe methods).
    :param access_cookie: access cookie name without prefix (HttpOnly, Path=/).
    :param refresh_cookie: refresh cookie name without prefix (HttpOnly,
        SameSite=Strict, Path = the refresh route only).
    :param csrf_cookie: CSRF cookie name without prefix (readable by scripts).
    :param csrf_header: the header that must repeat the CSRF cookie.
    :param role_scopes: extra scopes per role; every user also gets the scopes
        ``authenticated`` and its role name.
    :param prefix: where the auth routes are mounted (used for the refresh cookie path).
    :param max_body_bytes: larger request bodies are refused with 400.
    :param allowed_origins: origins allowed for cookie-authenticated websockets
        besides the request's own host.
    """

    realm: str = "jwtsess"
    secure: bool = True
    cookies: bool = True
    access_cookie: str = "jwtsess-access"
    refresh_cookie: str = "jwtsess-refresh"
    csrf_cookie: str = "jwtsess-csrf"
    csrf_header: str = "x-csrf-token"
    role_scopes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    prefix: str = "/auth"
    max_body_bytes: int = 8192
    allowed_origins: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ValueError("prefix must start with '/' and not end with one")
        if self.max_body_bytes < 256:
            raise ValueError("max_body_bytes must be at least 256")
        if '"' in self.realm or "\\" in self.realm:
            raise ValueError("realm must not contain quotes or backslashes")

    @property
    def access_cookie_name(self) -> str:
        return f"__Host-{self.access_cookie}" if self.secure else self.access_cookie

    @property
    def csrf_cookie_name(self) -> str:
        return f"__Host-{self.csrf_cookie}" if self.secure else self.csrf_cookie

    @property
    def refresh_cookie_name(self) -> str:
        # __Host- requires Path=/; the refresh cookie is path-scoped, so __Secure-.
        return f"__Secure-{self.refresh_cookie}" if self.secure else self.refresh_cookie

    @property
    def refresh_path(self) -> str:
        return f"{self.prefix}/refresh"

    def scopes_for(self, role: str) -> list[str]:
        return ["authenticated", role, *self.role_scopes.get(role, ())]
