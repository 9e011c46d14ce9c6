"""The admission policy on its own: counts, caps and the wrong-token budget, on a fake clock."""

from __future__ import annotations

import pytest

from nerfconf.net.admission import AdmissionLimits, AdmissionPolicy, source_of


def test_half_open_connections_are_capped_over_all_sources():
    policy = AdmissionPolicy(AdmissionLimits(max_half_open=2, max_per_source=4, max_peers=4))
    policy.opened("a", "10.0.0.1")
    policy.opened("b", "10.0.0.2")
    assert "too many connections in their handshake" in policy.refuse_connection("10.0.0.3")
    assert policy.refuse_peer("a") is None  # authenticated: no longer half-open
    assert policy.half_open == 1 and policy.peers == 1
    assert policy.refuse_connection("10.0.0.3") is None
    policy.opened("c", "10.0.0.3")
    assert policy.refuse_connection("10.0.0.4") is not None
    policy.closed("b")
    assert policy.refuse_connection("10.0.0.4") is None
    assert policy.connections == 2


def test_connections_from_one_source_are_capped():
    policy = AdmissionPolicy(AdmissionLimits(max_half_open=10, max_per_source=2))
    policy.opened(1, "10.0.0.1")
    policy.opened(2, "10.0.0.1")
    assert policy.refuse_connection("10.0.0.1") == "too many connections from 10.0.0.1 (2 at most)"
    assert policy.refuse_connection("10.0.0.2") is None
    policy.closed(1)
    assert policy.refuse_connection("10.0.0.1") is None
    policy.closed(1)  # twice, or never opened: no effect
    policy.closed("unknown")
    assert policy.connections == 1


def test_peers_beyond_what_the_application_takes_are_busy_until_one_leaves():
    policy = AdmissionPolicy(AdmissionLimits(max_peers=1))
    for key in ("first", "second", "third"):
        policy.opened(key, "10.0.0.1")
    assert policy.refuse_peer("first") is None
    busy = policy.refuse_peer("second")
    assert busy == "this host is already in a call (1 peer at a time); try again when it ends"
    assert policy.peers == 1 and policy.half_open == 2  # the busy one stays counted until it is gone
    policy.closed("first")
    assert policy.refuse_peer("third") is None
    with pytest.raises(ValueError, match="never opened"):
        policy.refuse_peer("stranger")


def test_wrong_tokens_are_rate_limited_per_source_within_the_window():
    policy = AdmissionPolicy(AdmissionLimits(max_token_failures=3, token_failure_window=60.0))
    t = 100.0
    for k in range(3):
        assert policy.refuse_hello("10.0.0.1", t + k) is None
        policy.token_failed("10.0.0.1", t + k)
    assert policy.refuse_hello("10.0.0.1", t + 3) == "too many wrong room tokens from 10.0.0.1; try again in 57 s"
    assert policy.refuse_hello("10.0.0.2", t + 3) is None
    # the oldest failure leaves the window at t + 60: one more attempt is allowed, not three
    assert policy.refuse_hello("10.0.0.1", t + 59.5) is not None
    assert policy.refuse_hello("10.0.0.1", t + 60.0) is None
    policy.token_failed("10.0.0.1", t + 60.0)
    assert policy.refuse_hello("10.0.0.1", t + 60.5) is not None
    assert policy.refuse_hello("10.0.0.1", t + 200.0) is None


def test_the_sources_remembered_for_wrong_tokens_are_bounded():
    policy = AdmissionPolicy(AdmissionLimits(max_token_failures=1, tracked_sources=2))
    for k, source in enumerate(("10.0.0.1", "10.0.0.2", "10.0.0.3")):
        policy.token_failed(source, float(k))
    assert policy.refuse_hello("10.0.0.1", 3.0) is None  # forgotten: it failed least recently
    assert policy.refuse_hello("10.0.0.2", 3.0) is not None
    assert policy.refuse_hello("10.0.0.3", 3.0) is not None


def test_a_source_is_an_ipv4_address_or_an_ipv6_64():
    assert source_of(("192.0.2.7", 4433)) == "192.0.2.7"
    assert source_of(("2001:db8:1:2:aaaa::1", 4433, 0, 0)) == "2001:db8:1:2::/64"
    assert source_of(("2001:db8:1:2:bbbb::9", 1)) == source_of(("2001:db8:1:2:aaaa::1", 2))
    assert source_of(("::ffff:192.0.2.7", 4433, 0, 0)) == "192.0.2.7"
    assert source_of("fe80::1%eth0") == "fe80::/64"


@pytest.mark.parametrize("field", ["max_half_open", "max_per_source", "max_peers", "max_token_failures"])
def test_limits_below_one_are_refused(field):
    with pytest.raises(ValueError, match=f"{field} must be at least 1"):
        AdmissionLimits(**{field: 0})
    with pytest.raises(ValueError, match="token_failure_window must be positive"):
        AdmissionLimits(token_failure_window=0)
