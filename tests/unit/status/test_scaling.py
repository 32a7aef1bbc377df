"""The replica arithmetic of workers/scaling.py, and the facts it relies on, without I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.connection import BrokerConnection
from broker.inspect import rates_from_management, vhost_of
from broker.publisher import Publisher
from broker.topology import Topology
from workers.queue_signals import SINGLE_ACTIVE_WORKERS, watched_queues
from workers.runtime.context import ServiceContext
from workers.runtime.services import _factories
from workers.runtime.settings import WORKERS, WorkerSettings
from workers.scaling import (
    Mode,
    QueueRates,
    QueueSample,
    ScalingPolicy,
    derive_rates,
    suggest_replicas,
)
from workers.store import open_store

POLICY = ScalingPolicy(drain_target_s=30, max_replicas=10)


def competing(
    depth: int, consumers: int, publish: float, ack: float | None, **policy: float
) -> int:
    rates = QueueRates(publish_rate=publish, ack_rate=ack)
    chosen = ScalingPolicy(**policy) if policy else POLICY  # type: ignore[arg-type]
    return suggest_replicas(Mode.COMPETING, QueueSample(depth, consumers), rates, chosen).replicas


# ---- rates ----
def test_publish_rate_is_what_was_handled_plus_what_piled_up() -> None:
    rates = derive_rates(QueueSample(100, 2), QueueSample(140, 2), handled=60, elapsed_s=2.0)
    assert rates == QueueRates(publish_rate=50.0, ack_rate=30.0)


def test_a_draining_queue_publishes_what_it_did_not_lose() -> None:
    rates = derive_rates(QueueSample(100, 2), QueueSample(40, 2), handled=80, elapsed_s=2.0)
    assert rates == QueueRates(publish_rate=10.0, ack_rate=40.0)


def test_publish_rate_never_goes_below_zero() -> None:
    # the depth fell by more than was counted as handled (an undercounting source)
    rates = derive_rates(QueueSample(100, 1), QueueSample(0, 1), handled=10, elapsed_s=1.0)
    assert rates == QueueRates(publish_rate=0.0, ack_rate=10.0)


def test_without_a_handled_count_the_ack_rate_is_unknown_and_publish_a_lower_bound() -> None:
    rates = derive_rates(QueueSample(3, 0), QueueSample(9, 0), handled=None, elapsed_s=2.0)
    assert rates == QueueRates(publish_rate=3.0, ack_rate=None)


def test_samples_at_the_same_instant_are_refused() -> None:
    with pytest.raises(ValueError, match="apart in time"):
        derive_rates(QueueSample(0, 0), QueueSample(0, 0), handled=0, elapsed_s=0.0)


# ---- competing consumers ----
def test_backlog_drained_within_the_target_at_the_observed_rate_per_consumer() -> None:
    # 10/s per consumer; 3000 waiting in 30 s is 100/s: ten consumers
    assert competing(3000, consumers=2, publish=0.0, ack=20.0) == 10
    assert competing(600, consumers=2, publish=0.0, ack=20.0) == 2


def test_what_still_arrives_counts_on_top_of_the_backlog() -> None:
    # 300 in 30 s = 10/s, plus 30/s arriving, at 10/s per consumer: four
    assert competing(300, consumers=3, publish=30.0, ack=30.0) == 4


def test_a_shorter_drain_target_asks_for_more() -> None:
    assert competing(600, consumers=2, publish=0.0, ack=20.0, drain_target_s=10) == 6


def test_the_bound_caps_the_suggestion_and_says_so() -> None:
    rates = QueueRates(publish_rate=0.0, ack_rate=1.0)
    policy = ScalingPolicy(drain_target_s=30, max_replicas=4)
    suggestion = suggest_replicas(Mode.COMPETING, QueueSample(10_000, 1), rates, policy)
    assert suggestion.replicas == 4
    assert "capped at 4" in suggestion.reason


def test_float_residue_does_not_add_a_replica() -> None:
    # 0.3 / 3 is 0.09999999999999999: exactly one consumer's worth, not two
    assert competing(3, consumers=3, publish=0.0, ack=0.3) == 1


def test_a_backlog_with_no_consumer_asks_for_one() -> None:
    rates = QueueRates(publish_rate=0.0, ack_rate=0.0)
    suggestion = suggest_replicas(Mode.COMPETING, QueueSample(500, 0), rates, POLICY)
    assert suggestion.replicas == 1
    assert "no consumer" in suggestion.reason


def test_consumers_that_handled_nothing_with_a_backlog_get_one_more() -> None:
    assert competing(50, consumers=2, publish=0.0, ack=0.0) == 3


def test_keeping_up_without_a_backlog_keeps_the_current_count() -> None:
    assert competing(0, consumers=3, publish=12.0, ack=12.0) == 3


def test_a_saturated_queue_with_little_arriving_may_shrink() -> None:
    # a backlog shows 100/s per consumer; 1/s arriving and 1 waiting need one, not three
    assert competing(1, consumers=3, publish=1.0, ack=300.0) == 1


def test_an_idle_queue_wants_the_minimum() -> None:
    assert competing(0, consumers=4, publish=0.0, ack=0.0) == 1
    assert competing(0, consumers=0, publish=0.0, ack=None) == 1


@given(
    depth=st.integers(1, 10**7),
    consumers=st.integers(0, 500),
    publish=st.floats(0, 1e5),
    ack=st.floats(0, 1e5),
    more=st.integers(1, 10**6),
    bound=st.integers(1, 50),
)
def test_suggestions_stay_in_bounds_and_never_fall_as_the_backlog_grows(
    depth: int, consumers: int, publish: float, ack: float, more: int, bound: int
) -> None:
    # from a backlog on: with none, the current count stands (capacity is unknown while idle)
    policy = ScalingPolicy(drain_target_s=30, max_replicas=bound)
    rates = QueueRates(publish_rate=publish, ack_rate=ack)
    now = suggest_replicas(Mode.COMPETING, QueueSample(depth, consumers), rates, policy)
    later = suggest_replicas(Mode.COMPETING, QueueSample(depth + more, consumers), rates, policy)
    assert 1 <= now.replicas <= bound
    assert now.replicas <= later.replicas


# ---- single active, dead letters, policy ----
@pytest.mark.parametrize("depth", [0, 10, 1_000_000])
def test_single_active_queues_want_one_active_and_one_standby_whatever_the_load(depth: int) -> None:
    rates = QueueRates(publish_rate=500.0, ack_rate=1.0)
    suggestion = suggest_replicas(Mode.SINGLE_ACTIVE, QueueSample(depth, 1), rates, POLICY)
    assert suggestion.replicas == 2
    assert "standby" in suggestion.reason


def test_dead_letter_queues_want_no_worker_replicas() -> None:
    rates = QueueRates(publish_rate=3.0, ack_rate=None)
    assert suggest_replicas(Mode.DEAD_LETTER, QueueSample(40, 0), rates, POLICY).replicas == 0


@pytest.mark.parametrize(
    ("drain", "bound", "message"),
    [(0.0, 5, "drain target"), (-1.0, 5, "drain target"), (30.0, 0, "replica bound")],
)
def test_a_policy_that_cannot_be_met_is_refused(drain: float, bound: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScalingPolicy(drain_target_s=drain, max_replicas=bound)


def test_single_active_modes_match_how_each_worker_declares_its_queue() -> None:
    """The services build their QueueSpec without I/O: read single_active from them."""
    settings = WorkerSettings(store_url="sqlite:///:memory:")
    conn = BrokerConnection(settings.broker, role="probe")  # never connected
    ctx = ServiceContext(
        conn=conn,
        publisher=Publisher(conn, sender="probe"),
        store=open_store("sqlite:///:memory:"),
        settings=settings,
        replica="0",
    )
    declared = {
        name: factory(ctx).consumer.spec.single_active  # type: ignore[attr-defined]
        for name, factory in _factories().items()
    }
    assert set(declared) == set(WORKERS)
    assert {name for name, single in declared.items() if single} == SINGLE_ACTIVE_WORKERS
    modes = {(q.worker, q.mode) for q in watched_queues(Topology()) if q.mode != Mode.DEAD_LETTER}
    assert modes == {(w, Mode.SINGLE_ACTIVE if declared[w] else Mode.COMPETING) for w in WORKERS}


# ---- the management API's answer, and the vhost it is asked about ----
def test_management_rates_are_read_from_message_stats() -> None:
    answer = {
        "name": "rally.q.tasks",
        "messages": 12,
        "message_stats": {
            "publish": 900,
            "publish_details": {"rate": 42.5},
            "ack": 850,
            "ack_details": {"rate": 40.0},
        },
    }
    rates = rates_from_management(answer)
    assert (rates.publish_rate, rates.ack_rate) == (42.5, 40.0)


def test_a_queue_nothing_went_through_has_zero_rates() -> None:
    rates = rates_from_management({"name": "rally.q.tasks", "messages": 0})
    assert (rates.publish_rate, rates.ack_rate) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", "/"),
        ("amqp://guest:guest@127.0.0.1:5672", "/"),
        ("amqp://u:p@rabbit:5672/fleet-a", "fleet-a"),
        ("amqp://u:p@rabbit:5672/%2Fodd", "/odd"),
    ],
)
def test_the_vhost_comes_from_the_amqp_url(url: str, vhost: str) -> None:
    assert vhost_of(url) == vhost
