"""Ports free on this machine: for processes the fault suite, the benches and the tests start."""

from __future__ import annotations

import socket

from fabric.config import LOOPBACK


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports nothing listens on now (held together while they are found, so
    none is handed out twice)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()
