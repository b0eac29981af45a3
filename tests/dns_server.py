"""A DNS server on a loopback port (dnslib), answering TXT queries from a dict: the doctor's
tests serve their own zones, good and broken, with no network.

UDP and TCP on the same port, as a real server: an answer too big for UDP (a 4 KB TXT record)
comes back truncated, and the resolver asks again over TCP.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSServer


def txt_strings(value: str) -> list[bytes]:
    """A TXT value as DNS carries it: character-strings of at most 255 bytes each."""
    data = value.encode()
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


@dataclass
class Zones(BaseResolver):
    """``records``: name -> TXT values. A name in ``failing`` answers SERVFAIL. ``asked`` counts
    the queries, so a test sees what was (and was not) looked up."""

    records: dict[str, list[str]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)

    def resolve(self, request, handler):  # dnslib's interface
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        self.asked.append(name)
        if name in self.failing:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        values = self.records.get(name)
        if values is None:
            if not any(key.endswith("." + name) for key in self.records):
                reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if request.q.qtype in (QTYPE.TXT, QTYPE.ANY):
            for value in values:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(txt_strings(value)), ttl=60))
        return reply


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            udp.close()
            tcp.close()
        return port
    raise RuntimeError("no free port for the DNS server")


@contextmanager
def dns_server(records: Mapping[str, Sequence[str]] | None = None) -> Iterator[tuple[str, Zones]]:
    """Yield ``("127.0.0.1:PORT", zones)``; change ``zones.records`` while it runs."""
    zones = Zones({k.lower(): list(v) for k, v in (records or {}).items()})
    port = _free_port()

    class Quiet:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    servers = [
        DNSServer(zones, address="127.0.0.1", port=port, tcp=tcp, logger=Quiet()) for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    try:
        yield f"127.0.0.1:{port}", zones
    finally:
        for server in servers:
            server.stop()
            server.server.server_close()
