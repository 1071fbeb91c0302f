"""Enrollment is resent until the broker answers: it may not be subscribed yet.

Started together from a shell, a vendor or a buyer may send its enrollment request before
the broker daemon has subscribed to its inbox; Mosquitto drops such a message. The agent
resends it on its timer, with backoff, and the broker answers a repeat with the same
certificate.
"""

from __future__ import annotations

from protocol.broker import BrokerCore
from protocol.buyer import BuyerCore
from protocol.events import CertificateReceived, MessageRejected
from protocol.memory import MemoryNetwork
from protocol.vendor import VendorCore
from tests.support.world import T0, SeededRandom, default_terms, seeded_identity


def test_an_enrollment_sent_before_the_broker_listens_is_resent_until_answered() -> None:
    broker = BrokerCore("broker", seeded_identity("broker"), random=SeededRandom("broker"))
    net = MemoryNetwork()
    token = net.open_account(broker, "alice", "buyer", 1_000, "EUR", T0)
    alice = BuyerCore("alice", seeded_identity("alice"), broker.info)
    net.attach(alice, T0)
    alice.enroll(token, T0)
    net.pump(T0)
    assert len(net.dropped) == 1  # nobody listens on the broker's inbox yet
    assert alice.get_timer() == T0 + 2.0

    net.attach(broker, T0 + 1)
    alice.handle_timer(T0 + 1)  # not due yet: nothing is sent
    assert net.pump(T0 + 1) == 0
    alice.handle_timer(T0 + 2)
    net.pump(T0 + 2)
    assert alice.certified is not None
    assert [e for e in net.events["alice"] if isinstance(e, CertificateReceived)]
    assert alice.get_timer() is None  # answered: no more retransmission


def test_a_repeated_enrollment_gets_the_same_certificate_and_stops_once_answered() -> None:
    broker = BrokerCore("broker", seeded_identity("broker"), random=SeededRandom("broker"))
    net = MemoryNetwork()
    net.attach(broker, T0)
    token = net.open_account(broker, "kiosk", "vendor", 0, "EUR", T0)
    kiosk = VendorCore("kiosk", seeded_identity("kiosk"), broker.info, default_terms())
    net.attach(kiosk, T0)
    kiosk.enroll(token, T0)
    (request,) = kiosk.data_to_send()  # the broker answers; the answer is lost
    broker.receive(request.topic, request.payload, T0)
    assert broker.data_to_send()
    assert kiosk.get_timer() == T0 + 2.0
    kiosk.handle_timer(T0 + 2)
    net.pump(T0 + 2)
    assert kiosk.certified is not None
    assert kiosk.certified.serial == broker.accounts["kiosk"].serial
    assert not [e for e in net.events["broker"] if isinstance(e, MessageRejected)]
    assert kiosk.get_timer() is None
