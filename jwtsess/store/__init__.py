"""Session stores: one contract (``SessionStore``), several backends."""

from .base import FeedBatch as FeedBatch
from .base import NewSession as NewSession
from .base import Revocation as Revocation
from .base import SessionStore as SessionStore
from .memory import MemoryStore as MemoryStore
from .redis import RedisStore as RedisStore

__all__ = ["FeedBatch", "MemoryStore", "NewSession", "RedisStore", "Revocation", "SessionStore"]
