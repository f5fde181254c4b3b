"""Signed pair tokens, voter cookies and rate limits: what a script cannot forge or outrun."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.arena.config import RateLimit, parse_rate, secret_bytes
from harness.arena.ratelimit import TokenBuckets, retry_after_header
from harness.arena.tokens import Signer, TokenError, new_pair_id
from harness.errors import ConfigError

KEY = secret_bytes("correct horse battery staple")
NOW = 1_800_000_000.0


def test_a_token_is_valid_only_for_its_voter_until_it_expires() -> None:
    signer, pair = Signer(KEY), new_pair_id()
    token = signer.pair_token(pair, "voter-1", NOW + 60)
    claims = signer.verify_pair_token(token, "voter-1", NOW)
    assert claims.pair_id == pair and claims.expires_at == pytest.approx(NOW + 60)
    with pytest.raises(TokenError, match="not issued by this arena to this voter"):
        signer.verify_pair_token(token, "voter-2", NOW)
    with pytest.raises(TokenError, match="not issued by this arena"):
        Signer(secret_bytes("another secret of this length")).verify_pair_token(token, "voter-1", NOW)
    with pytest.raises(TokenError, match="expired") as caught:
        signer.verify_pair_token(token, "voter-1", NOW + 61)
    assert caught.value.expired


def test_extending_the_expiry_or_swapping_the_pair_breaks_the_signature() -> None:
    signer = Signer(KEY)
    token = signer.pair_token(new_pair_id(), "v", NOW + 60)
    pair, expires, mac = token.split(".")
    for forged in (f"{pair}.{int(expires) + 3_600_000}.{mac}", f"{new_pair_id()}.{expires}.{mac}"):
        with pytest.raises(TokenError) as caught:
            signer.verify_pair_token(forged, "v", NOW)
        assert not caught.value.expired


@given(st.text(max_size=120))
def test_arbitrary_strings_are_rejected_cleanly(text: str) -> None:
    with pytest.raises(TokenError):
        Signer(KEY).verify_pair_token(text, "v", NOW)


@given(position=st.integers(0, 200), char=st.sampled_from("0123456789abcdefABCDEF-_."))
def test_any_single_character_change_is_detected(position: int, char: str) -> None:
    signer = Signer(KEY)
    token = signer.pair_token("0" * 32, "v", NOW + 60)
    i = position % len(token)
    tampered = token[:i] + char + token[i + 1:]
    if tampered == token:
        return
    with pytest.raises(TokenError):
        signer.verify_pair_token(tampered, "v", NOW)


def test_voter_cookies_are_accepted_only_as_issued() -> None:
    signer = Signer(KEY)
    voter, cookie = signer.new_voter_cookie()
    assert signer.voter_from_cookie(cookie) == voter
    other_voter, other_cookie = signer.new_voter_cookie()
    assert other_voter != voter
    invented = f"{'A' * 22}.{cookie.split('.')[1]}"
    for bad in (None, "", voter, invented, cookie + "x", f"{voter}.{other_cookie.split('.')[1]}"):
        assert signer.voter_from_cookie(bad) is None


def test_secrets_and_rates_are_validated_with_clear_messages() -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        secret_bytes("short")
    assert parse_rate("30") == RateLimit(30, 10)
    assert parse_rate("6/2") == RateLimit(6, 2)
    for bad in ("fast", "0", "-5", "10/0", ""):
        with pytest.raises(ConfigError, match="--voter-limit"):
            parse_rate(bad, "--voter-limit")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_the_sustained_rate() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(RateLimit(per_minute=60, burst=3), clock=clock)
    assert [buckets.take("v") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("v")
    assert wait == pytest.approx(1.0) and retry_after_header(wait) == "1"
    assert buckets.take("other") == 0.0  # keys are independent
    clock.now = 1.0
    assert buckets.take("v") == 0.0
    assert buckets.take("v") > 0


@given(gaps=st.lists(st.floats(0, 5), min_size=1, max_size=80), burst=st.integers(1, 10),
       per_minute=st.floats(1, 600))
def test_never_more_than_burst_plus_rate_times_elapsed(gaps: list[float], burst: int, per_minute: float) -> None:
    clock = FakeClock()
    buckets = TokenBuckets(RateLimit(per_minute, burst), clock=clock)
    allowed = 0
    for gap in gaps:
        clock.now += gap
        allowed += buckets.take("k") == 0.0
    assert allowed <= burst + clock.now * per_minute / 60 + 1e-6


def test_memory_stays_bounded_by_forgetting_idle_clients() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(RateLimit(60, 2), clock=clock, max_keys=100)
    for i in range(1000):
        buckets.take(f"ip:{i}")
        clock.now += 0.01
    assert len(buckets) <= 100
    # an active client is not forgotten when the idle ones fill the table
    clock.now = 0.0
    busy = TokenBuckets(RateLimit(60, 2), clock=clock, max_keys=100)
    for i in range(100):
        busy.take(f"ip:{i}")
    clock.now = 10.0  # the hundred have refilled: idle
    assert busy.take("abuser") == 0.0 and busy.take("abuser") == 0.0
    assert len(busy) <= 100
    assert busy.take("abuser") > 0
