"""RPM/TPM counters behind one interface: ``MemoryLimiter`` in one process, ``RedisLimiter``
(``tollway.limits.redis``) across replicas when TOLLWAY_REDIS_URL is set."""

from tollway.limits.base import Decision, Limiter
from tollway.limits.memory import MemoryLimiter

__all__ = ["Decision", "Limiter", "MemoryLimiter"]
