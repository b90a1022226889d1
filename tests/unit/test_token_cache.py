"""The per-process cache of verified access tokens: bounded by its ttl and by token expiry."""

from __future__ import annotations

from fhirbill.auth.access import Principal, TokenCache


def _principal(expires_at: int) -> Principal:
    return Principal("c", ("system/*.rs",), None, None, None, expires_at=expires_at)


def test_entry_lives_at_most_ttl() -> None:
    cache = TokenCache(ttl=1.0)
    p = _principal(expires_at=10_000)
    cache.put("k", p, now=100.0)
    assert cache.get("k", 100.5) is p
    assert cache.get("k", 101.0) is None


def test_entry_never_outlives_its_token() -> None:
    cache = TokenCache(ttl=60.0)
    cache.put("k", _principal(expires_at=105), now=100.0)
    assert cache.get("k", 104.9) is not None
    assert cache.get("k", 105.0) is None


def test_ttl_zero_caches_nothing() -> None:
    cache = TokenCache(ttl=0)
    cache.put("k", _principal(expires_at=10_000), now=100.0)
    assert cache.get("k", 100.0) is None


def test_clear_and_capacity() -> None:
    cache = TokenCache(ttl=5.0, capacity=2)
    for key in ("a", "b"):
        cache.put(key, _principal(expires_at=10_000), now=100.0)
    cache.clear()
    assert cache.get("a", 100.0) is None
    for key in ("a", "b", "c"):
        cache.put(key, _principal(expires_at=10_000), now=100.0)
    assert len(cache._entries) <= 2
    assert cache.get("c", 100.0) is not None
