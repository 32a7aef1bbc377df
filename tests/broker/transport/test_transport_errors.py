"""AMQP errors leave broker/ as TransportError, a BrokerError, with the original as cause."""

from __future__ import annotations

import pytest

from broker.connection import BrokerConnection
from broker.errors import BrokerError
from broker.transport_errors import TransportError, transport_errors

pytestmark = pytest.mark.broker


async def test_a_refused_declare_is_a_transport_error(broker: BrokerConnection) -> None:
    channel = await broker.connection.channel(publisher_confirms=False)
    with pytest.raises(TransportError) as caught, transport_errors():
        await channel.declare_queue(f"{broker.topology.namespace}.missing", passive=True)
    assert isinstance(caught.value, BrokerError)
    assert caught.value.__cause__ is not None


def test_other_errors_pass_through() -> None:
    with pytest.raises(ValueError, match="mine"), transport_errors():
        raise ValueError("mine")
