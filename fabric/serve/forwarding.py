"""The forwarding link: how an instance hands a ``Get`` or ``BatchGet`` to its partition's owner.

Lookups arrive over gRPC, from services and clients. Between instances, the one hop a lookup may
take to its owner goes over this link instead: a TCP connection carrying length-prefixed frames,
one request at a time, kept open and reused. The request and answer bodies are the gRPC ones
(``GetRequest``/``BatchGetRequest`` in, the serialized answer back), so the owner's answer is
passed on as it wrote it. Python's gRPC costs about 0.45 ms of a forward's latency and as much
CPU on each side; a round trip on this link costs about 15 µs (docs/routing.md).

Frames, all integers big-endian::

    connection opens:  b"FABRIC-FORWARD/1"
    request:           u32 body length, u8 method, u32 timeout (ms), body
        method 1: a ``GetRequest``; 2: a ``BatchGetRequest``; 3: a located batch
    answer:            u32 body length, u8 status code, body
        status 0 (OK): the serialized answer
        otherwise:     u16 length, the previous owner's ``client.id`` (or nothing), message

    a located batch's body, once per partition:
        u16 table length, u16 topic length, u32 partition, u32 key count,
        table, topic, u32 length of each key, the keys

A ``BatchGet`` without read bounds goes as a located batch: the record keys the forwarder
already computed, grouped by partition, so the owner reads its stores without parsing and
locating the lookups again. Its answer is a ``BatchGetResponse`` holding one result per key, in
the order sent. A batch with bounds goes as the ``BatchGetRequest`` itself, which carries them.

A status is a gRPC status code's number: the owner's failure reaches the forwarder as the gRPC
status it would have answered. The owner runs the request on the connection's own thread, with
the timeout it was given as its deadline; a forwarder that times out drops the connection, so
an answer never reaches the wrong request.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable

import grpc

from fabric.errors import PortInUseError

log = logging.getLogger(__name__)

GET = 1
BATCH_GET = 2
BATCH_GET_LOCATED = 3
METHODS = frozenset({GET, BATCH_GET, BATCH_GET_LOCATED})

_HELLO = b"FABRIC-FORWARD/1"
_REQUEST = struct.Struct(">IBI")
_ANSWER = struct.Struct(">IB")
_PREVIOUS = struct.Struct(">H")
_PART = struct.Struct(">HHII")
# A forwarder reads an answer up to this size in one call; larger ones get a buffer of their own.
_READ_SIZE = 64 << 10
# Far above any answer MAX_BATCH lookups make; a length beyond it is not a fabric frame.
MAX_FRAME = 256 << 20
_CODES = {code.value[0]: code for code in grpc.StatusCode}


class ForwardError(Exception):
    """A forwarded lookup failed: the owner answered ``code``, or could not be reached
    (UNAVAILABLE) or not in time (DEADLINE_EXCEEDED). ``previous`` is the ``client.id`` of the
    instance handing the partition over, when the owner named one."""

    def __init__(self, code: grpc.StatusCode, message: str, previous: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.previous = previous


LocatedKeys = tuple[str, str, int, list[bytes]]
"""A located batch's lookups of one partition: table, topic, partition and record keys."""


def located_batch(parts: Iterable[LocatedKeys]) -> bytes:
    """The body of a located batch."""
    pieces: list[bytes] = []
    for table, topic, partition, keys in parts:
        table_name, topic_name = table.encode(), topic.encode()
        pieces += (
            _PART.pack(len(table_name), len(topic_name), partition, len(keys)),
            table_name,
            topic_name,
            struct.pack(f">{len(keys)}I", *map(len, keys)),
            *keys,
        )
    return b"".join(pieces)


def located_parts(body: bytes) -> list[LocatedKeys]:
    """The partitions of a located batch's body; ValueError when it is not one."""
    parts = []
    at, end = 0, len(body)
    try:
        while at < end:
            table_length, topic_length, partition, count = _PART.unpack_from(body, at)
            at += _PART.size
            table = body[at : at + table_length].decode()
            at += table_length
            topic = body[at : at + topic_length].decode()
            at += topic_length
            lengths = struct.unpack_from(f">{count}I", body, at)
            at += 4 * count
            keys = []
            for length in lengths:
                keys.append(body[at : at + length])
                at += length
            if at > end:
                raise ValueError("not a located batch: a key runs past its end")
            parts.append((table, topic, partition, keys))
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"not a located batch: {exc}") from None
    return parts


Handler = Callable[[int, bytes, float], bytes]
"""``(method, request body, deadline on the monotonic clock)`` → the serialized answer; raises
:class:`ForwardError` for a failure the forwarder should see."""


# -- the owner's side ------------------------------------------------------------------------


class ForwardServer:
    """Accepts the links other instances open to this one, a thread for each."""

    def __init__(self, host: str, port: int, handler: Handler) -> None:
        self._handler = handler
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A restarted instance binds its port again while links of its last run linger.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
        except OSError as exc:
            self._listener.close()
            raise PortInUseError(
                f"cannot listen for forwarded lookups on {host}:{port} ({exc.strerror}): the port "
                "is in use or the address is not local; choose another with --peer-port or "
                "FABRIC_PEER_PORT (by default the gRPC port + 100)"
            ) from None
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._idle: set[socket.socket] = set()  # links waiting for their next request
        self._closed = False

    def start(self) -> None:
        threading.Thread(target=self._accept, name="forward-accept", daemon=True).start()

    def stop(self) -> None:
        """No new link; each open one finishes the request it is answering, then closes."""
        with self._lock:
            self._closed = True
            idle = list(self._idle)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for link in idle:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                link, _ = self._listener.accept()
            except OSError:
                return  # the listener closed
            with self._lock:
                if self._closed:
                    link.close()
                    return
            threading.Thread(
                target=self._serve, args=(link,), name="forward-link", daemon=True
            ).start()

    def _serve(self, link: socket.socket) -> None:
        link.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = link.makefile("rb")
        try:
            if reader.read(len(_HELLO)) != _HELLO:
                return  # not a fabric instance: nothing it could read would make sense
            while self._waiting(link):
                head = reader.read(_REQUEST.size)
                if len(head) < _REQUEST.size:
                    return
                length, method, timeout_ms = _REQUEST.unpack(head)
                if length > MAX_FRAME:
                    return
                body = reader.read(length)
                if len(body) < length or not self._busy(link):
                    return  # stopping: the forwarder sees the link close and asks elsewhere
                link.sendall(self._answer(method, body, time.monotonic() + timeout_ms / 1000))
        except OSError:
            return
        finally:
            with self._lock:
                self._idle.discard(link)
            reader.close()
            link.close()

    def _waiting(self, link: socket.socket) -> bool:
        """Marks ``link`` idle, where :meth:`stop` can close it; False once stopping."""
        with self._lock:
            if self._closed:
                return False
            self._idle.add(link)
            return True

    def _busy(self, link: socket.socket) -> bool:
        """Marks ``link`` answering a request, which :meth:`stop` lets finish; False once
        stopping."""
        with self._lock:
            self._idle.discard(link)
            return not self._closed

    def _answer(self, method: int, body: bytes, deadline: float) -> bytes:
        try:
            if method not in METHODS:
                raise ForwardError(grpc.StatusCode.UNIMPLEMENTED, f"no forwarded method {method}")
            answer = self._handler(method, body, deadline)
        except ForwardError as exc:
            return _failure(exc)
        except Exception as exc:
            log.exception("a forwarded lookup failed")
            return _failure(ForwardError(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"))
        return _ANSWER.pack(len(answer), 0) + answer


def _failure(exc: ForwardError) -> bytes:
    previous = exc.previous.encode()
    body = _PREVIOUS.pack(len(previous)) + previous + exc.message.encode()
    return _ANSWER.pack(len(body), exc.code.value[0]) + body


# -- the forwarder's side --------------------------------------------------------------------


class _ClosedBeforeAnswerError(ConnectionError):
    """The owner closed the link before a byte of the answer came."""


class _Link:
    """One connection to an owner. Its socket never blocks: a send or a read is tried at once
    and waited for (poll) only when the kernel cannot take or give the bytes yet. A socket with
    a timeout would poll before every call, and each system call lets the instance's other
    threads take the GIL; a forward on this link usually costs one send and one or two reads."""

    __slots__ = ("_buffer", "_poll", "address", "sock")

    def __init__(self, address: str, timeout: float) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(_HELLO)
        self.sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)
        self._buffer = bytearray(_READ_SIZE)

    def send(self, frame: bytes, timeout_at: float) -> None:
        view = memoryview(frame)
        sent = 0
        while sent < len(view):
            try:
                sent += self.sock.send(view[sent:])
            except BlockingIOError:
                self._wait(select.POLLOUT, timeout_at)

    def receive(self, timeout_at: float) -> tuple[int, bytes]:
        """The answer's status code and body."""
        view = memoryview(self._buffer)
        got = 0
        try:
            while got < _ANSWER.size:
                got += self._read_into(view[got:], timeout_at)
        except ConnectionError:
            if got:
                raise
            raise _ClosedBeforeAnswerError("the owner closed the link") from None
        length, code = _ANSWER.unpack_from(view)
        if length > MAX_FRAME:
            raise ValueError(f"an answer of {length} bytes is not a fabric frame")
        end = _ANSWER.size + length
        if got > end:  # one request at a time: nothing may follow its answer
            raise ValueError("the owner sent more than one answer")
        if end <= len(view):
            while got < end:
                got += self._read_into(view[got:end], timeout_at)
            return code, bytes(view[_ANSWER.size : end])
        body = bytearray(length)
        have = got - _ANSWER.size
        body[:have] = view[_ANSWER.size : got]
        rest = memoryview(body)
        while have < length:
            have += self._read_into(rest[have:], timeout_at)
        return code, bytes(body)

    def _read_into(self, view: memoryview, timeout_at: float) -> int:
        while True:
            try:
                count = self.sock.recv_into(view)
            except BlockingIOError:
                self._wait(select.POLLIN, timeout_at)
                continue
            if count == 0:
                raise ConnectionError("the link closed inside an answer")
            return count

    def _wait(self, events: int, timeout_at: float) -> None:
        remaining = timeout_at - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self._poll.modify(self.sock, events)
        if not self._poll.poll(remaining * 1000):
            raise TimeoutError

    def close(self) -> None:
        self.sock.close()


class PendingForward:
    """A request sent to its owner, whose answer :meth:`result` waits for."""

    __slots__ = ("_frame", "_link", "_links", "_reused", "_timeout_at")

    def __init__(
        self, links: ForwardLinks, link: _Link, reused: bool, frame: bytes, timeout_at: float
    ) -> None:
        self._links = links
        self._link = link
        self._reused = reused
        self._frame = frame
        self._timeout_at = timeout_at

    def result(self) -> bytes:
        """The owner's serialized answer; :class:`ForwardError` for its failure or the link's."""
        link = self._link
        try:
            try:
                code, body = link.receive(self._timeout_at)
            except _ClosedBeforeAnswerError:
                if not self._reused:
                    raise
                # The owner closed this idle link (it restarted, or is stopping) before the
                # request reached it: once more on a new link. Lookups are reads, safe to repeat.
                link.close()
                link = self._link = self._links.connect(link.address, self._timeout_at)
                link.send(self._frame, self._timeout_at)
                code, body = link.receive(self._timeout_at)
        except TimeoutError:
            link.close()
            raise ForwardError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the owner at {link.address} did not answer a forwarded lookup in time",
            ) from None
        except (OSError, ValueError) as exc:
            link.close()
            raise _unreachable(link.address, exc) from None
        self._links.release(link)
        if code == 0:
            return body
        (size,) = _PREVIOUS.unpack_from(body)
        start = _PREVIOUS.size
        previous = body[start : start + size].decode()
        message = body[start + size :].decode(errors="replace")
        raise ForwardError(_CODES.get(code, grpc.StatusCode.UNKNOWN), message, previous)


def _unreachable(address: str, exc: BaseException) -> ForwardError:
    return ForwardError(
        grpc.StatusCode.UNAVAILABLE,
        f"cannot reach the owner's forwarding link at {address}: {exc}",
    )


class ForwardLinks:
    """Links to the other instances, opened as needed and kept idle for the next request; one
    request at a time on each. Thread-safe."""

    def __init__(self, idle_per_peer: int = 32) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[_Link]] = {}
        self._idle_per_peer = idle_per_peer
        self._closed = False

    def send(self, address: str, method: int, body: bytes, timeout_s: float) -> PendingForward:
        """Send a request to the owner at ``address`` (its host and forwarding port) without
        waiting for its answer."""
        frame = _REQUEST.pack(len(body), method, max(1, int(timeout_s * 1000))) + body
        timeout_at = time.monotonic() + timeout_s
        with self._lock:
            idle = self._idle.get(address)
            link = idle.pop() if idle else None
        reused = link is not None
        try:
            if link is None:
                link = self.connect(address, timeout_at)
            link.send(frame, timeout_at)
        except ForwardError:
            raise
        except OSError as exc:
            if link is not None:
                link.close()
            if not reused:
                raise _unreachable(address, exc) from None
            # An idle link the owner closed: the request goes on a new one.
            link = self.connect(address, timeout_at)
            reused = False
            try:
                link.send(frame, timeout_at)
            except OSError as again:
                link.close()
                raise _unreachable(address, again) from None
        return PendingForward(self, link, reused, frame, timeout_at)

    def call(self, address: str, method: int, body: bytes, timeout_s: float) -> bytes:
        return self.send(address, method, body, timeout_s).result()

    def connect(self, address: str, timeout_at: float) -> _Link:
        try:
            return _Link(address, max(0.001, timeout_at - time.monotonic()))
        except TimeoutError:
            raise ForwardError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"could not connect to the owner's forwarding link at {address} in time",
            ) from None
        except (OSError, ValueError) as exc:
            raise _unreachable(address, exc) from None

    def release(self, link: _Link) -> None:
        with self._lock:
            idle = self._idle.setdefault(link.address, [])
            if self._closed or len(idle) >= self._idle_per_peer:
                link.close()
            else:
                idle.append(link)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            links = [link for idle in self._idle.values() for link in idle]
            self._idle.clear()
        for link in links:
            link.close()
