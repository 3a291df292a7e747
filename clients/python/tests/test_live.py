"""Every operation of the blocking client and its error paths, against a real kernel, from
inside an environment (clients/tests/live.sh runs this with PYWARREN_LIVE=sync)."""

import time

import pytest

import warren
from warren import protocol as p

from conftest import live

pytestmark = live("sync")


def test_the_handshake_names_this_environment_and_agrees_on_the_latest_version(k):
    assert k.env == "py-tests"
    assert k.version == p.VERSION
    me = k.whoami()
    assert me.env == k.env
    assert me.entries[0][0] == 1 and me.entries[0][2] == 0xF


def test_send_to_self_and_selective_receive_by_correlation_and_header(k):
    k.send(1, b"first")
    k.send(1, "second", headers={"kind": "b"}, correlation=7)
    k.send(1, b"third", headers=[("kind", b"c")])
    assert k.recv(1, header=("kind", "c")).body == b"third"
    d = k.recv(1, correlation=7)
    assert d.body == b"second" and d.header("kind") == b"b" and d.sender == k.env and d.badge == 0
    assert k.recv(1).body == b"first", "skipped messages keep their place"


def test_a_receive_with_nothing_there_times_out(k):
    with pytest.raises(warren.Timeout) as e:
        k.recv(0)
    assert isinstance(e.value, TimeoutError) and e.value.code == 8


def test_lookup_of_an_unknown_name_is_not_found(k):
    with pytest.raises(warren.NotFound):
        k.lookup("no-such-environment-here")


def test_a_handle_not_in_the_table(k):
    with pytest.raises(warren.NoSuchHandle) as e:
        k.send(4000, b"x")
    assert isinstance(e.value, warren.CapabilityError)


def test_a_one_shot_capability_is_used_up(k):
    once = k.attenuate(1, warren.SEND, uses=1)
    assert once.rights == warren.SEND
    k.send(once, b"once")
    with pytest.raises(warren.UsedUp):
        k.send(once, b"twice")
    assert k.recv(1).body == b"once"
    with pytest.raises(warren.NoRight):
        k.monitor(once)


def test_a_capability_past_its_lifetime_is_expired(k):
    brief = k.attenuate(1, warren.SEND, expires_in=0.001)
    time.sleep(0.05)
    with pytest.raises(warren.Expired):
        k.send(brief, b"late")


def test_revoke_a_badged_grant(k):
    given = k.attenuate(1, warren.SEND, badge=99)
    k.send(given, b"badged")
    assert k.recv(1).badge == 99
    k.revoke(1)
    with pytest.raises(warren.Revoked):
        k.send(given, b"after")
    k.drop(given)
    with pytest.raises(warren.NoSuchHandle):
        k.send(given, b"dropped")


def test_a_full_mailbox_and_then_a_dead_one(k):
    with k.create_mailbox("spare") as box:
        assert box.rights == 0xF
        with pytest.raises(warren.BadRequest):
            k.create_mailbox("spare")
        sent = 0
        with pytest.raises(warren.Full):
            while sent < 100000:
                k.try_send(box, b"fill")
                sent += 1
        assert sent > 0
        batch = k.recv_many(timeout=1, mailbox=box)
        assert len(batch) == sent and set(batch) == {b"fill"}
        to_box = k.attenuate(box, warren.SEND)
    # Leaving the block dropped the RECEIVE handle: the mailbox is destroyed.
    with pytest.raises(warren.Dead) as e:
        k.send(to_box, b"too late")
    assert isinstance(e.value, warren.MailboxError)


def test_batches_arrive_whole_in_order_and_a_non_plain_message_comes_alone(k):
    bodies = [b"b%d" % i for i in range(40)]
    assert k.send_many(1, bodies) == 40
    got = []
    while len(got) < 40:
        got += list(k.recv_many(16, timeout=1))
    assert got == bodies
    accepted = k.send_many(1, [b"x"] * 1000, wait=False)
    assert 0 < accepted < 1000, "without waiting, a prefix"
    assert len(k.recv_many(timeout=1)) == accepted
    k.send(1, b"not plain", correlation=5)
    b = k.recv_many(8, timeout=1)
    assert b.delivery is not None and b.delivery.body == b"not plain" and len(b) == 1


def test_send_recv_pipelines_and_reports_a_refused_send(k):
    err, d = k.send_recv(1, b"to myself", timeout=1)
    assert err is None and d.body == b"to myself"
    once = k.attenuate(1, warren.SEND, uses=1)
    k.send(once, b"spent")
    err, d = k.send_recv(once, b"refused", timeout=1)
    assert isinstance(err, warren.UsedUp) and d.body == b"spent"


def test_attest_gives_a_quote_or_attest_failed_and_refuses_an_empty_nonce(k):
    try:
        quote = k.attest(b"nonce-123", b"key")
        assert quote.startswith(b"{")
    except warren.AttestFailed:
        pass
    with pytest.raises(warren.BadRequest):
        k.attest(b"")


def test_requests_over_a_limit_are_refused_before_sending(k):
    with pytest.raises(warren.EncodeError):
        k.send(1, b"x" * (p.MAX_BODY + 1))
    with pytest.raises(warren.EncodeError):
        k.attest(b"n" * 65)
    k.send(1, b"still here")
    assert k.recv(1).body == b"still here"
