"""The forwarding link between instances: answers and failures carried as the owner gave them,
deadlines kept, links reused, and every broken link a clear UNAVAILABLE."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from fabric.errors import PortInUseError
from fabric.materialize.membership import HostInfo, member_client_id, parse_client_id
from fabric.serve.forwarding import (
    BATCH_GET,
    GET,
    ForwardError,
    ForwardLinks,
    ForwardServer,
    LocatedKeys,
    located_batch,
    located_parts,
)


class _Owner:
    """A handler standing in for an instance's service, recording what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bytes, float]] = []
        self.delay_s = 0.0
        self.fail: Exception | None = None

    def __call__(self, method: int, body: bytes, deadline: float) -> bytes:
        self.calls.append((method, body, deadline))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return b"answer to " + body


@pytest.fixture
def owner() -> _Owner:
    return _Owner()


@pytest.fixture
def server(owner: _Owner) -> Iterator[ForwardServer]:
    server = ForwardServer("127.0.0.1", 0, owner)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def links() -> Iterator[ForwardLinks]:
    links = ForwardLinks()
    yield links
    links.close()


def _address(server: ForwardServer) -> str:
    return f"127.0.0.1:{server.port}"


def test_an_answer_comes_back_as_the_owner_wrote_it(
    server: ForwardServer, links: ForwardLinks, owner: _Owner
) -> None:
    started = time.monotonic()
    assert links.call(_address(server), GET, b"k1", 2.0) == b"answer to k1"
    method, body, deadline = owner.calls[0]
    assert (method, body) == (GET, b"k1")
    assert started + 1.5 < deadline <= time.monotonic() + 2.0


def test_answers_larger_than_the_read_buffer_and_answers_in_pieces_arrive_whole(
    links: ForwardLinks,
) -> None:
    big = bytes(range(256)) * 1200  # beyond the 64 KiB a link reads at once
    with socket.socket() as fake:
        fake.bind(("127.0.0.1", 0))
        fake.listen(1)

        def answer_slowly() -> None:
            conn, _ = fake.accept()
            with conn:
                for body in (big, b"second"):
                    conn.recv(100)  # the request (after the hello, the first time)
                    frame = len(body).to_bytes(4, "big") + b"\x00" + body
                    cuts = sorted({0, 2, 7, len(frame) // 2, len(frame)})
                    for start, end in itertools.pairwise(cuts):
                        conn.sendall(frame[start:end])
                        time.sleep(0.01)

        threading.Thread(target=answer_slowly, daemon=True).start()
        address = f"127.0.0.1:{fake.getsockname()[1]}"
        assert links.call(address, GET, b"k", 2.0) == big
        assert links.call(address, GET, b"k", 2.0) == b"second"


LOCATED: list[LocatedKeys] = [
    ("public.users", "demo.public.users", 0, [b'{"id":1}', b'{"id":22}']),
    ("public.bids", "demo.public.bids", 5, [b'{"auction_id":1,"bid_no":2}']),
    ("public.ünïcode", "demo.public.ünïcode", 65535, [b""]),
    ("public.users", "demo.public.users", 1, []),
]


def test_a_located_batch_reads_back_as_it_was_written() -> None:
    assert located_parts(located_batch(LOCATED)) == LOCATED
    assert located_parts(b"") == []


@pytest.mark.parametrize("cut", [1, 11, 14, 40, -1])
def test_a_cut_located_batch_is_refused(cut: int) -> None:
    body = located_batch(LOCATED[:1])
    with pytest.raises(ValueError, match="located batch"):
        located_parts(body[:cut])


def test_a_link_is_reused_and_sends_overlap_local_work(
    server: ForwardServer, links: ForwardLinks
) -> None:
    pending = [links.send(_address(server), BATCH_GET, f"b{n}".encode(), 2.0) for n in range(3)]
    assert [p.result() for p in pending] == [b"answer to b0", b"answer to b1", b"answer to b2"]
    for n in range(20):
        assert links.call(_address(server), GET, str(n).encode(), 2.0) == f"answer to {n}".encode()
    assert len(links._idle[_address(server)]) == 3


def test_the_owners_failure_arrives_with_its_status_and_previous_owner(
    server: ForwardServer, links: ForwardLinks, owner: _Owner
) -> None:
    owner.fail = ForwardError(
        grpc.StatusCode.UNAVAILABLE, "this instance does not serve that partition", "b@h:1+2"
    )
    with pytest.raises(ForwardError) as failed:
        links.call(_address(server), GET, b"k", 2.0)
    assert failed.value.code is grpc.StatusCode.UNAVAILABLE
    assert failed.value.message == "this instance does not serve that partition"
    assert failed.value.previous == "b@h:1+2"
    owner.fail = ForwardError(grpc.StatusCode.NOT_FOUND, "table public.nope is not captured")
    with pytest.raises(ForwardError) as unknown:
        links.call(_address(server), GET, b"k", 2.0)
    assert unknown.value.code is grpc.StatusCode.NOT_FOUND
    assert unknown.value.previous == ""


def test_an_unexpected_failure_is_internal_and_the_link_lives_on(
    server: ForwardServer, links: ForwardLinks, owner: _Owner
) -> None:
    owner.fail = KeyError("boom")
    with pytest.raises(ForwardError) as failed:
        links.call(_address(server), GET, b"k", 2.0)
    assert failed.value.code is grpc.StatusCode.INTERNAL
    assert "KeyError" in failed.value.message
    owner.fail = None
    assert links.call(_address(server), GET, b"k", 2.0) == b"answer to k"


def test_an_unknown_method_is_unimplemented(server: ForwardServer, links: ForwardLinks) -> None:
    with pytest.raises(ForwardError) as failed:
        links.call(_address(server), 99, b"k", 2.0)
    assert failed.value.code is grpc.StatusCode.UNIMPLEMENTED


def test_a_late_answer_is_a_deadline_and_never_reaches_the_next_request(
    server: ForwardServer, links: ForwardLinks, owner: _Owner
) -> None:
    owner.delay_s = 0.3
    started = time.monotonic()
    with pytest.raises(ForwardError) as late:
        links.call(_address(server), GET, b"slow", 0.1)
    assert late.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 0.25
    owner.delay_s = 0.0
    assert links.call(_address(server), GET, b"next", 2.0) == b"answer to next"


def test_an_owner_that_is_gone_is_unavailable(links: ForwardLinks) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with pytest.raises(ForwardError) as failed:
        links.call(f"127.0.0.1:{free}", GET, b"k", 1.0)
    assert failed.value.code is grpc.StatusCode.UNAVAILABLE
    assert f"127.0.0.1:{free}" in failed.value.message


def test_an_owner_restarted_on_its_port_is_reached_through_a_new_link(
    owner: _Owner, links: ForwardLinks
) -> None:
    first = ForwardServer("127.0.0.1", 0, owner)
    first.start()
    port = first.port
    assert links.call(f"127.0.0.1:{port}", GET, b"a", 2.0) == b"answer to a"
    first.stop()
    time.sleep(0.05)
    second = ForwardServer("127.0.0.1", port, owner)
    second.start()
    try:
        assert links.call(f"127.0.0.1:{port}", GET, b"b", 2.0) == b"answer to b"
    finally:
        second.stop()


def test_a_stopping_owner_finishes_the_request_it_is_answering(
    server: ForwardServer, links: ForwardLinks, owner: _Owner
) -> None:
    owner.delay_s = 0.2
    pending = links.send(_address(server), GET, b"in flight", 2.0)
    time.sleep(0.05)
    stopping = threading.Thread(target=server.stop)
    stopping.start()
    assert pending.result() == b"answer to in flight"
    stopping.join()
    with pytest.raises(ForwardError) as failed:
        links.call(_address(server), GET, b"after", 1.0)
    assert failed.value.code is grpc.StatusCode.UNAVAILABLE


def test_a_port_in_use_says_which_setting_moves_it(server: ForwardServer) -> None:
    with pytest.raises(PortInUseError, match="FABRIC_PEER_PORT"):
        ForwardServer("127.0.0.1", server.port, lambda m, b, d: b"")


def test_something_else_on_the_port_is_unavailable_not_a_hang(links: ForwardLinks) -> None:
    # A server that is not a fabric instance answers the link with words of its own.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)

        def answer_nonsense() -> None:
            conn, _ = other.accept()
            conn.recv(100)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

        threading.Thread(target=answer_nonsense, daemon=True).start()
        with pytest.raises(ForwardError) as failed:
            links.call(f"127.0.0.1:{other.getsockname()[1]}", GET, b"k", 1.0)
    assert failed.value.code is grpc.StatusCode.UNAVAILABLE


def test_a_stranger_on_the_link_is_hung_up_on(server: ForwardServer, owner: _Owner) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as stranger:
        stranger.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert stranger.recv(100) == b""
    assert owner.calls == []


@pytest.mark.parametrize(
    "host",
    [
        HostInfo("a", "127.0.0.1:27070"),
        HostInfo("a", "fabric-1:27070", 40123),
        HostInfo("in@stance", "[::1]:27070", 1),
    ],
)
def test_the_forwarding_port_travels_in_the_client_id(host: HostInfo) -> None:
    assert parse_client_id(host.client_id) == host
    assert host.client_id == member_client_id(host.instance_id, host.endpoint, host.peer_port)


def test_the_peer_address_is_on_the_endpoints_host() -> None:
    assert HostInfo("a", "fabric-1:27070", 40123).peer_address == "fabric-1:40123"
    assert HostInfo("a", "127.0.0.1:27070").peer_address is None


@pytest.mark.parametrize("client_id", ["a@h:1+", "a@h:1+x", "a@h:1+70000", "a@h:1+0", "plain"])
def test_a_client_id_with_a_broken_peer_port_names_no_instance(client_id: str) -> None:
    assert parse_client_id(client_id) is None
