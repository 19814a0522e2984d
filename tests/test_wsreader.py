"""greenroom.web.wsfixes: the WebSocket's own frame buffer and its reads.

Frames are parsed from a buffer filled by reads of up to ``RECV_SIZE`` bytes, straight from the
OS socket once pywsgi's rfile is empty, waiting for readability first when the last read emptied
the kernel's buffer. These tests drive one server-side WebSocket over a socket pair, and
synchronise on the reads themselves (a spy on ``_recv``), never on time.
"""

from gevent import monkey

if not monkey.is_module_patched("socket"):  # tests/conftest.py normally did it first
    monkey.patch_all()

import os  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.queue  # noqa: E402
import pytest  # noqa: E402
from geventwebsocket.websocket import Stream  # noqa: E402

from greenroom.web import wsfixes  # noqa: E402

TIMEOUT = 5.0


class Interrupted(Exception):
    """Raised into a reader waiting in the middle of a frame (as a gevent.Timeout would be)."""
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x0, 0x1, 0x2, 0x8, 0x9


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A masked client frame, with the 7-bit, 16-bit or 64-bit length form its size needs."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 0x10000:
        head = bytes((first, 0x80 | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, 0x80 | 127)) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key + wsfixes.apply_mask(payload, key)


class Pair:
    """A server-side WebSocket on one end of a socket pair, the test's raw client on the other."""

    def __init__(self, first: bytes = b"", wrap: type | None = None) -> None:
        server_sock, self.peer = socket.socketpair()
        self.peer.settimeout(TIMEOUT)
        if wrap is not None:
            server_sock = wrap(server_sock.family, server_sock.type, fileno=server_sock.detach())
        handler = SimpleNamespace(socket=server_sock, rfile=server_sock.makefile("rb", -1))
        self.ws = wsfixes.WebSocket({}, Stream(handler), handler)
        self.reads: gevent.queue.Queue = gevent.queue.Queue()
        if first:  # what pywsgi's rfile buffered with the request, or simply the first frame
            self.peer.sendall(first)

    def spy_on_reads(self) -> None:
        """Report the size of every read of the socket from now on (after the first message,
        when reads have left pywsgi's rfile)."""
        real = self.ws._recv

        def spy(ws: wsfixes.WebSocket, size: int, missing: int) -> bytes:
            data = real(ws, size, missing)
            self.reads.put(len(data))
            return data

        self.ws._recv = spy

    def receive(self):
        with gevent.Timeout(TIMEOUT):
            return self.ws.receive()

    def read_reply(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next unmasked server frame (all are short here)."""
        head = self.peer.recv(2)
        assert len(head) == 2 and head[1] < 126, head
        payload = b""
        while len(payload) < head[1]:
            payload += self.peer.recv(head[1] - len(payload))
        return head[0] & 0x0F, payload

    def close(self) -> None:
        self.peer.close()
        self.ws.handler.socket.close()


@pytest.fixture
def pair():
    made = []

    def make(first: bytes = b"", wrap: type | None = None) -> Pair:
        made.append(Pair(first, wrap))
        return made[-1]

    yield make
    for p in made:
        p.close()


def direct(pair) -> Pair:
    """A pair whose WebSocket has received one message, so reads go to the socket itself."""
    p = pair(frame(OP_TEXT, b"hello"))
    assert p.receive() == "hello"
    assert p.ws._recv is wsfixes.WebSocket._recv_direct
    p.spy_on_reads()
    return p


def test_several_frames_in_one_read(pair):
    p = direct(pair)
    p.peer.sendall(frame(OP_BINARY, b"\x01") + frame(OP_TEXT, "é".encode()) + frame(OP_BINARY, b""))
    assert [p.receive() for _ in range(3)] == [b"\x01", "é", b""]
    assert p.reads.qsize() == 1


def test_a_frame_split_into_single_bytes(pair):
    # A fragmented text message with a ping between its fragments, a 16-bit length, then the
    # header of a 64-bit length byte by byte and its payload at once.
    p = direct(pair)
    p.ws.max_message_size = None
    big = os.urandom(70_000)
    last = frame(OP_BINARY, big)
    wire = (frame(OP_TEXT, b"ab", fin=False) + frame(OP_PING, b"p") + frame(OP_CONT, b"c")
            + frame(OP_BINARY, b"x" * 300) + last[:14])

    def trickle() -> None:
        for i in range(len(wire)):
            p.peer.sendall(wire[i : i + 1])
            assert p.reads.get(timeout=TIMEOUT) == 1  # the server read it before the next
        p.peer.sendall(last[14:])

    writer = gevent.spawn(trickle)
    assert p.receive() == "abc"
    assert p.read_reply() == (0xA, b"p")  # the pong
    assert p.receive() == b"x" * 300
    assert p.receive() == big
    writer.get(timeout=TIMEOUT)


def test_a_frame_larger_than_one_read(pair):
    p = direct(pair)
    p.ws.max_message_size = None
    payload = os.urandom(2 * wsfixes.RECV_SIZE + 3)
    writer = gevent.spawn(p.peer.sendall, frame(OP_BINARY, payload) + frame(OP_TEXT, b"next"))
    assert p.receive() == payload
    assert p.receive() == "next"
    writer.get(timeout=TIMEOUT)
    assert p.reads.qsize() >= 2


def test_a_close_frame_right_after_data_in_the_same_read(pair):
    p = direct(pair)
    p.peer.sendall(frame(OP_BINARY, b"last") + frame(OP_CLOSE, struct.pack("!H", 4000) + b"bye"))
    assert p.receive() == b"last"
    assert p.receive() is None
    assert (p.ws.close_code, p.ws.close_reason) == (4000, "bye")
    assert p.read_reply() == (OP_CLOSE, struct.pack("!H", 4000))
    assert p.reads.qsize() == 1


def test_bytes_the_rfile_buffered_with_the_request_come_first(pair):
    # The client's first frames arrive with the upgrade request: pywsgi's rfile reads them into
    # its buffer while it reads the request line.
    p = pair(b"GET / HTTP/1.1\r\n" + frame(OP_TEXT, b"one") + frame(OP_TEXT, b"two"))
    assert p.ws.handler.rfile.readline() == b"GET / HTTP/1.1\r\n"
    assert p.receive() == "one"
    assert p.receive() == "two"
    p.peer.sendall(frame(OP_TEXT, b"three"))
    assert p.receive() == "three"
    assert p.ws._recv is wsfixes.WebSocket._recv_direct


def test_a_receive_interrupted_mid_frame_loses_nothing(pair):
    p = direct(pair)
    wire = frame(OP_BINARY, b"0123456789")
    p.peer.sendall(wire[:7])
    reader = gevent.spawn(p.ws.receive)
    assert p.reads.get(timeout=TIMEOUT) == 7  # the reader now waits for the rest of the frame
    reader.kill(Interrupted, block=True, timeout=TIMEOUT)
    assert isinstance(reader.exception, Interrupted)
    p.peer.sendall(wire[7:])
    assert p.receive() == b"0123456789"


def parked_reader(p: Pair) -> gevent.Greenlet:
    """A greenlet in ``receive()`` that waits on the socket's read watcher, nothing buffered
    (reads not spied on: the path every room connection takes)."""
    assert p.receive() == "hello"
    assert p.ws._recv is wsfixes.WebSocket._recv_direct
    reader = gevent.spawn(p.ws.receive)
    gevent.sleep(0)  # the reader runs until it parks; the assertion says whether it did
    assert p.ws._sock._read_event.callback is not None
    return reader


def test_a_reader_parked_on_the_watcher_wakes_for_the_next_frame_and_leaves_it_idle(pair):
    p = pair(frame(OP_TEXT, b"hello"))
    reader = parked_reader(p)
    p.peer.sendall(frame(OP_BINARY, b"next"))
    assert reader.get(timeout=TIMEOUT) == b"next"
    assert p.ws._sock._read_event.callback is None  # gevent's own waits may use it again
    p.peer.sendall(frame(OP_TEXT, b"after"))
    assert p.receive() == "after"


def test_a_reader_parked_on_the_watcher_ends_when_another_greenlet_closes_the_socket(pair):
    """gevent's close() throws into the greenlet the watcher's callback belongs to."""
    p = pair(frame(OP_TEXT, b"hello"))
    reader = parked_reader(p)
    p.ws.handler.rfile.close()  # the makefile() reference would keep the socket open
    p.ws.handler.socket.close()
    assert reader.get(timeout=TIMEOUT) is None
    assert p.ws.close_code == 1006


def test_a_reader_parked_on_the_watcher_can_be_killed(pair):
    p = pair(frame(OP_TEXT, b"hello"))
    reader = parked_reader(p)
    reader.kill(Interrupted, block=True, timeout=TIMEOUT)
    assert isinstance(reader.exception, Interrupted)
    assert p.ws._sock._read_event.callback is None
    p.peer.sendall(frame(OP_TEXT, b"after"))
    assert p.receive() == "after"


def test_eof_in_the_middle_of_a_frame_ends_with_1006(pair):
    p = direct(pair)
    p.peer.sendall(frame(OP_BINARY, b"0123456789")[:9])
    p.peer.shutdown(socket.SHUT_WR)
    assert p.receive() is None
    assert p.ws.close_code == 1006


def test_raw_read_takes_what_read_frame_buffered_first(pair):
    p = direct(pair)
    p.peer.sendall(frame(OP_TEXT, b"msg") + b"raw bytes")
    assert p.receive() == "msg"
    assert p.ws.raw_read(3) == b"raw"
    assert p.ws.raw_read(6) == b" bytes"
    p.peer.shutdown(socket.SHUT_WR)
    assert p.ws.raw_read(4) == b""  # EOF, as rfile.read gave


def test_sockets_of_other_classes_are_read_through_their_own_recv(pair):
    class Wrapped(socket.socket):  # e.g. gevent.ssl.SSLSocket, which must decrypt
        pass

    p = pair(frame(OP_TEXT, b"hello"), wrap=Wrapped)
    assert p.receive() == "hello"
    assert p.ws._recv is wsfixes.WebSocket._recv_socket
    p.peer.sendall(frame(OP_TEXT, b"again"))
    assert p.receive() == "again"


def _in_hub(fn):
    """Run ``fn`` as a libev callback, where a timer runs it: in the hub, where nothing may wait."""
    done = gevent.event.AsyncResult()

    def run():
        try:
            done.set(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            done.set_exception(exc)

    gevent.get_hub().loop.run_callback(run)
    return done.get(timeout=TIMEOUT)


def test_a_ping_from_the_hub_is_one_whole_server_frame(pair):
    p = pair()
    assert _in_hub(p.ws.ping_from_hub) is True
    assert p.read_reply() == (OP_PING, b"")


def test_a_ping_from_the_hub_waits_its_turn_behind_a_send_in_progress(pair):
    """With the send lock taken (a frame is being written) the hub must not write, or the ping
    would land inside that frame: it answers False and the caller sends from a greenlet."""
    p = pair()
    p.ws._send_lock.acquire()
    try:
        assert _in_hub(p.ws.ping_from_hub) is False
    finally:
        p.ws._send_lock.release()
    p.ws.send(b"after")
    assert p.read_reply() == (OP_BINARY, b"after")  # no ping before it


def test_a_ping_from_the_hub_does_not_wait_for_a_full_socket(pair):
    p = pair()
    p.ws.handler.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    filler = b"x" * 65536
    try:
        while True:
            p.ws.handler.socket.send(filler, 0, 0.0)  # fill the pair's buffers: nobody reads
    except BlockingIOError:
        pass
    assert _in_hub(p.ws.ping_from_hub) is False  # and it returned: it did not wait in the hub


def test_a_ping_half_sent_from_the_hub_is_finished_before_any_other_frame(pair):
    """The socket takes one byte of the two: the other must follow before the next frame, and
    the hub must not wait for it (a greenlet finishes it, holding the send lock meanwhile)."""
    p = pair()
    real = p.ws._sock

    class OneByteFirst:
        def send(self, data, flags=0, timeout=None):
            self.send = real.send  # only the first send is cut short
            return real.send(bytes(data[:1]), flags)

    p.ws._sock = OneByteFirst()
    assert _in_hub(p.ws.ping_from_hub) is True
    p.ws._sock = real
    p.ws.send(b"after")
    assert p.read_reply() == (OP_PING, b"")
    assert p.read_reply() == (OP_BINARY, b"after")
