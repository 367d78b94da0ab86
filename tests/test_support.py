"""The suite's own helpers."""

from __future__ import annotations

import socket

from tests.support.http_server import ephemeral_ports, free_port


def test_a_free_port_is_bindable_and_never_one_the_kernel_gives_outgoing_connections() -> None:
    ephemeral = ephemeral_ports()
    ports = {free_port() for _ in range(50)}

    assert not ports & set(ephemeral)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
