"""Credential pools: which of a provider's credentials serves the next call.

This issue's pool spreads calls round-robin over the least-busy credentials and counts
in-flight calls; caps, queueing, cooldowns and pinning build on the same object.
"""

from __future__ import annotations

from tollway.core.catalog import Credential


class CredentialPool:
    def __init__(self, provider: str, credentials: tuple[Credential, ...]) -> None:
        self.provider = provider
        self.credentials = credentials or (Credential(id=f"{provider}:none"),)
        self.in_flight = dict.fromkeys((c.id for c in self.credentials), 0)
        self._next = 0

    def acquire(self) -> Credential:
        creds = self.credentials
        n = len(creds)
        if n == 1:
            chosen = creds[0]
        else:
            low = min(self.in_flight.values())
            start = self._next
            chosen = creds[start % n]
            for i in range(n):
                c = creds[(start + i) % n]
                if self.in_flight[c.id] == low:
                    chosen = c
                    self._next = (start + i + 1) % n
                    break
        self.in_flight[chosen.id] += 1
        return chosen

    def release(self, credential: Credential) -> None:
        if self.in_flight.get(credential.id, 0) > 0:
            self.in_flight[credential.id] -= 1
