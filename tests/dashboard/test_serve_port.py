"""`lorita serve` on a port that is taken stops at once and says how to choose another."""

from __future__ import annotations

import socket

import pytest

from api.serve import PortInUse, ensure_port_free


def test_a_taken_port_is_refused_with_the_way_to_choose_another():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUse) as refused:
            ensure_port_free("127.0.0.1", port)
    message = str(refused.value)
    assert f"Port {port} on 127.0.0.1 is already in use" in message
    assert f"lorita serve --port {port + 1}" in message
    assert f"make serve PORT={port + 1}" in message
    # A SystemExit with a message: the command prints it and exits with status 1.
    assert isinstance(refused.value, SystemExit)


def test_a_free_port_passes():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ensure_port_free("127.0.0.1", port)  # released above: nothing raised
