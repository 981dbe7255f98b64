"""CredentialPool: least in-flight first, round-robin among ties, counts never negative."""

from __future__ import annotations

from tollway.core.catalog import Credential
from tollway.routing.pools import CredentialPool

CREDS = tuple(Credential(id=f"k{i}", secret=f"s{i}") for i in range(3))


def ids(creds: list[Credential]) -> list[str]:
    return [c.id for c in creds]


def test_concurrent_calls_spread_over_idle_credentials_first() -> None:
    pool = CredentialPool("openai", CREDS)
    assert ids([pool.acquire() for _ in range(3)]) == ["k0", "k1", "k2"]
    assert pool.in_flight == {"k0": 1, "k1": 1, "k2": 1}


def test_ties_are_served_round_robin() -> None:
    pool = CredentialPool("openai", CREDS)
    served = []
    for _ in range(7):
        c = pool.acquire()
        served.append(c)
        pool.release(c)
    assert ids(served) == ["k0", "k1", "k2", "k0", "k1", "k2", "k0"]


def test_round_robin_continues_when_all_are_equally_busy() -> None:
    pool = CredentialPool("openai", CREDS)
    [pool.acquire() for _ in range(3)]
    assert ids([pool.acquire() for _ in range(3)]) == ["k0", "k1", "k2"]
    assert pool.in_flight == {"k0": 2, "k1": 2, "k2": 2}


def test_the_least_busy_credential_wins_over_round_robin_order() -> None:
    pool = CredentialPool("openai", CREDS)
    a, b, c = pool.acquire(), pool.acquire(), pool.acquire()
    pool.release(b)
    assert pool.acquire() == b  # k1 is the only idle one, though k0 is next in turn
    pool.release(c)
    pool.release(a)
    assert ids([pool.acquire(), pool.acquire()]) == ["k2", "k0"]


def test_release_decrements_in_flight() -> None:
    pool = CredentialPool("openai", CREDS[:2])
    a = pool.acquire()
    pool.acquire()
    pool.acquire()
    assert pool.in_flight == {"k0": 2, "k1": 1}
    pool.release(a)
    assert pool.in_flight == {"k0": 1, "k1": 1}


def test_release_never_goes_negative_and_ignores_unknown_credentials() -> None:
    pool = CredentialPool("openai", CREDS)
    a = pool.acquire()
    pool.release(a)
    pool.release(a)
    pool.release(Credential(id="stranger"))
    assert pool.in_flight == {"k0": 0, "k1": 0, "k2": 0}
    # a spurious release does not make k0 look less busy than its peers
    assert ids([pool.acquire() for _ in range(3)]) == ["k1", "k2", "k0"]


def test_a_single_credential_serves_every_call_and_counts_them() -> None:
    pool = CredentialPool("openai", CREDS[:1])
    assert ids([pool.acquire() for _ in range(3)]) == ["k0", "k0", "k0"]
    assert pool.in_flight == {"k0": 3}


def test_a_provider_without_credentials_gets_one_placeholder() -> None:
    pool = CredentialPool("ollama", ())
    cred = pool.acquire()
    assert cred == Credential(id="ollama:none")
    assert cred.secret is None
    pool.release(cred)
    assert pool.in_flight == {"ollama:none": 0}
