"""The localstripe harness: a separate process, loopback only, nothing on disk, stopped by pid."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import httpx
import pytest

from devstack.localstripe import LocalStripeError, LocalStripeServer, free_port

STOCK_PICKLE = Path("/tmp/localstripe.pickle")


def _answers(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _other_local_addresses() -> set[str]:
    """Addresses of this machine other than 127.0.0.1 (stock localstripe binds all of them)."""
    addresses = {"::1"} if socket.has_ipv6 else set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            addresses.add(str(info[4][0]))
    except OSError:
        pass
    addresses.discard("127.0.0.1")
    return addresses


def test_command_runs_the_runner_module_in_a_separate_interpreter() -> None:
    server = LocalStripeServer(8555)

    assert server.command() == [
        sys.executable,
        "-m",
        "devstack.localstripe_main",
        "--port",
        "8555",
        "--host",
        "127.0.0.1",
    ]
    assert server.url == "http://127.0.0.1:8555"


def test_start_serves_on_loopback_only_and_stop_ends_the_process() -> None:
    pickle_before = STOCK_PICKLE.stat().st_mtime_ns if STOCK_PICKLE.exists() else None
    server = LocalStripeServer(free_port())

    server.start()
    pid = server.pid
    assert pid is not None
    try:
        assert _answers("127.0.0.1", server.port)
        for address in _other_local_addresses():
            assert not _answers(address, server.port), f"localstripe answered on {address}"
        with pytest.raises(LocalStripeError, match="already"):
            LocalStripeServer(server.port).start()
        # A write: stock localstripe would pickle its whole store to /tmp now.
        created = httpx.post(
            f"{server.url}/v1/customers",
            data={"email": "a@x.test"},
            auth=("sk_test_localstripe", ""),
        )
        assert created.status_code == 200
    finally:
        server.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not _answers("127.0.0.1", server.port)
    # Persistence is off: the shared pickle of stock localstripe is neither created nor touched.
    pickle_after = STOCK_PICKLE.stat().st_mtime_ns if STOCK_PICKLE.exists() else None
    assert pickle_after == pickle_before


def test_stop_is_idempotent() -> None:
    server = LocalStripeServer(free_port())
    server.stop()
    with server:
        assert server.pid is not None
    server.stop()
    assert server.pid is None
