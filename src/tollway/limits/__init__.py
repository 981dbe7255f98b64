"""RPM/TPM counters behind one interface (``Limiter``, in ``tollway.core.limiter``, so that billing
counts through it without importing this package): ``MemoryLimiter`` in one process,
``RedisLimiter`` (``tollway.limits.redis``) across replicas when TOLLWAY_REDIS_URL is set."""

from tollway.core.limiter import Decision, Limiter
from tollway.limits.memory import MemoryLimiter

__all__ = ["Decision", "Limiter", "MemoryLimiter"]
