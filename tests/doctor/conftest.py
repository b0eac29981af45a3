"""One DNS server for the doctor's tests (stopping one takes a second: socketserver's poll), its
zones reset for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dns_server import Zones, dns_server


@pytest.fixture(scope="session")
def _dns() -> Iterator[tuple[str, Zones]]:
    with dns_server() as running:
        yield running


@pytest.fixture
def dns(_dns: tuple[str, Zones]) -> Iterator[tuple[str, Zones]]:
    """``(address, zones)`` with empty zones; a test fills ``zones.records``."""
    address, zones = _dns
    zones.records.clear()
    zones.failing.clear()
    zones.asked.clear()
    yield address, zones
