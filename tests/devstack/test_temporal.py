"""The Temporal dev server of the dev stack keeps the engine's search attributes across restarts."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
    RemoveSearchAttributesRequest,
)
from temporalio.client import Client

from devstack.processes import DevStackError
from devstack.temporal import TemporalDevServer
from tests.harness import free_port
from workflows import search_attributes

EXPECTED = {key.name: int(key.indexed_value_type) for key in search_attributes.ALL}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(free_port(), db_file=tmp_path / "temporal.db")
    try:
        yield server
    finally:
        server.stop()


async def registered(client: Client) -> dict[str, int]:
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    return {name: int(kind) for name, kind in response.custom_attributes.items()}


async def test_restart_on_the_same_db_keeps_and_restores_search_attributes(
    server: TemporalDevServer, tmp_path: Path
) -> None:
    server.start(log_path=tmp_path / "temporal.log")
    client = await Client.connect(server.address)
    assert await registered(client) == EXPECTED
    # An attribute the engine added after this database was created: the flags alone would not
    # register it on a restart.
    await client.operator_service.remove_search_attributes(
        RemoveSearchAttributesRequest(namespace="default", search_attributes=["InvoiceId"])
    )
    assert "InvoiceId" not in await registered(client)
    server.stop()

    server.start(log_path=tmp_path / "temporal.log")
    client = await Client.connect(server.address)
    assert await registered(client) == EXPECTED


def test_a_taken_port_is_refused_before_starting() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(DevStackError, match=f"port {port} is in use"):
            TemporalDevServer(port).start()


async def test_a_search_attribute_of_another_type_is_reported(server: TemporalDevServer) -> None:
    server.start()
    client = await Client.connect(server.address)
    await client.operator_service.remove_search_attributes(
        RemoveSearchAttributesRequest(namespace="default", search_attributes=["PlanCode"])
    )
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace="default",
            search_attributes={"PlanCode": IndexedValueType.INDEXED_VALUE_TYPE_TEXT},
        )
    )

    with pytest.raises(DevStackError, match="PlanCode exists .* with type INDEXED_VALUE_TYPE_TEXT"):
        server.ensure_search_attributes()
