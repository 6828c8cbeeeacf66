"""jwtsess: stateless JWT sessions for Starlette.

The public API is exactly what ``__all__`` lists (tests/test_public_api.py
checks it); everything else is internal and may change.
"""

from .access import AccessClaims as AccessClaims
from .access import AccessTokenSigner as AccessTokenSigner
from .audit import AuditEvent as AuditEvent
from .clock import Clock as Clock
from .dpop import DPoPProof as DPoPProof
from .dpop import DPoPSettings as DPoPSettings
from .dpop import DPoPVerifier as DPoPVerifier
from .dpop_jwk import DPoPKey as DPoPKey
from .errors import AuthError as AuthError
from .errors import BadRequest as BadRequest
from .errors import ClaimsUnavailable as ClaimsUnavailable
from .errors import CSRFFailed as CSRFFailed
from .errors import DPoPNonceRequired as DPoPNonceRequired
from .errors import DPoPProofInvalid as DPoPProofInvalid
from .errors import DPoPRequired as DPoPRequired
from .errors import InsufficientRole as InsufficientRole
from .errors import JWTSessError as JWTSessError
from .errors import KeyringError as KeyringError
from .errors import RateLimited as RateLimited
from .errors import RefreshReused as RefreshReused
from .errors import RevocationStateStale as RevocationStateStale
from .errors import SessionNotFound as SessionNotFound
from .errors import StoreUnavailable as StoreUnavailable
from .errors import TokenExpired as TokenExpired
from .errors import TokenInvalid as TokenInvalid
from .errors import TokenMalformed as TokenMalformed
from .errors import TokenMissing as TokenMissing
from .errors import TokenRejected as TokenRejected
from .errors import TokenRevoked as TokenRevoked
from .errors import UnknownKeyId as UnknownKeyId
from .issuer import ClaimsLoader as ClaimsLoader
from .issuer import Issuer as Issuer
from .issuer import UserClaims as UserClaims
from .jwks_source import JWKSKeySource as JWKSKeySource
from .keyring import KeyRing as KeyRing
from .keysource import KeySource as KeySource
from .keysource import VerificationKey as VerificationKey
from .keytool import init_keys as init_keys
from .keytool import prune_keys as prune_keys
from .keytool import rotate_keys as rotate_keys
from .login_limit import LoginAttempt as LoginAttempt
from .login_limit import LoginLimiter as LoginLimiter
from .login_limit import LoginLimits as LoginLimits
from .mirror import RevocationMirror as RevocationMirror
from .refresh_secrets import prune_refresh_secrets as prune_refresh_secrets
from .refresh_secrets import rotate_refresh_secret as rotate_refresh_secret
from .refresh_token import RefreshSecret as RefreshSecret
from .sessions import ClientMetadata as ClientMetadata
from .sessions import SessionGrant as SessionGrant
from .sessions import SessionInfo as SessionInfo
from .sessions import SessionPolicy as SessionPolicy
from .sessions import SessionStatus as SessionStatus
from .sessions import TokenPair as TokenPair
from .sessions import client_fingerprint as client_fingerprint
from .sessions import key_binding as key_binding
from .settings import TokenSettings as TokenSettings
from .store import MemoryStore as MemoryStore
from .store import RedisStore as RedisStore
from .store import SessionStore as SessionStore
from .verifier import RevocationCheck as RevocationCheck
from .verifier import Verifier as Verifier

__version__ = "0.1.0"

__all__ = [
    "AccessClaims",
    "AccessTokenSigner",
    "AuditEvent",
    "AuthError",
    "BadRequest",
    "CSRFFailed",
    "ClaimsLoader",
    "ClaimsUnavailable",
    "ClientMetadata",
    "Clock",
    "DPoPKey",
    "DPoPNonceRequired",
    "DPoPProof",
    "DPoPProofInvalid",
    "DPoPRequired",
    "DPoPSettings",
    "DPoPVerifier",
    "InsufficientRole",
    "Issuer",
    "JWKSKeySource",
    "JWTSessError",
    "KeyRing",
    "KeySource",
    "KeyringError",
    "LoginAttempt",
    "LoginLimiter",
    "LoginLimits",
    "MemoryStore",
    "RateLimited",
    "RedisStore",
    "RefreshReused",
    "RefreshSecret",
    "RevocationCheck",
    "RevocationMirror",
    "RevocationStateStale",
    "SessionGrant",
    "SessionInfo",
    "SessionNotFound",
    "SessionPolicy",
    "SessionStatus",
    "SessionStore",
    "StoreUnavailable",
    "TokenExpired",
    "TokenInvalid",
    "TokenMalformed",
    "TokenMissing",
    "TokenPair",
    "TokenRejected",
    "TokenRevoked",
    "TokenSettings",
    "UnknownKeyId",
    "UserClaims",
    "VerificationKey",
    "Verifier",
    "client_fingerprint",
    "init_keys",
    "key_binding",
    "prune_keys",
    "prune_refresh_secrets",
    "rotate_keys",
    "rotate_refresh_secret",
]
