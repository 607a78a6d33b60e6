"""The write path keeps frames whole and in order: at a deadline, on a stalled peer, and when
Ctrl-C (a signal handler that raises) strikes in the middle."""

from __future__ import annotations

import signal
import socket
import threading

import pytest

from memphis_sync.errors import WriteError
from memphis_sync.nats.transport import SocketStream


class _FlakySocket:
    """Accepts a few bytes per send; raises KeyboardInterrupt once, like a signal handler."""

    def __init__(self, interrupt_at_call: int, error_at_call: int = -1) -> None:
        self.received = bytearray()
        self.calls = 0
        self.interrupt_at_call = interrupt_at_call
        self.error_at_call = error_at_call

    def gettimeout(self):
        return None

    def send(self, data, flags=0) -> int:
        self.calls += 1
        if self.calls == self.interrupt_at_call:
            raise KeyboardInterrupt
        if self.calls == self.error_at_call:
            raise ConnectionResetError("peer reset")
        chunk = bytes(data[:7])
        self.received += chunk
        return len(chunk)


def test_interrupt_mid_write_keeps_the_rest_for_the_next_write():
    sock = _FlakySocket(interrupt_at_call=3)
    frames = b"PUB a 5\r\nhello\r\n" * 5
    stream = SocketStream(sock)  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        stream.write(frames)
    assert bytes(sock.received) == frames[:14]  # two sends of 7 bytes went out
    assert stream.pending == len(frames) - 14  # the rest is kept, in order
    assert stream.write(b"PING\r\n") is True  # the next writer sends the rest first
    assert bytes(sock.received) == frames + b"PING\r\n"
    assert stream.pending == 0


def test_socket_errors_become_write_errors():
    sock = _FlakySocket(interrupt_at_call=-1, error_at_call=2)
    with pytest.raises(WriteError, match="peer reset"):
        SocketStream(sock).write(b"x" * 50)  # type: ignore[arg-type]


def test_real_socket_pair_roundtrip():
    a, b = socket.socketpair()
    try:
        data = bytes(range(256)) * 4096  # 1 MiB: several send() calls
        got = bytearray()

        def drain():
            while len(got) < len(data):
                got.extend(b.recv(65536))

        t = threading.Thread(target=drain)
        t.start()
        SocketStream(a).write(data)
        t.join(10)
        assert bytes(got) == data
    finally:
        a.close()
        b.close()


def _pair_with_small_buffers():
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return a, b


def _read_exactly(sock, size, timeout=10.0):
    sock.settimeout(timeout)
    got = bytearray()
    while len(got) < size:
        chunk = sock.recv(65536)
        assert chunk, "peer closed early"
        got.extend(chunk)
    return bytes(got)


def test_write_to_a_stalled_peer_returns_at_the_deadline_and_finishes_later():
    import time

    a, b = _pair_with_small_buffers()
    try:
        stream = SocketStream(a)
        data = bytes(range(256)) * 4096  # 1 MiB, far more than the socket buffers hold
        start = time.monotonic()
        assert stream.write(data, deadline=start + 0.3) is False  # nobody reads: bounded
        took = time.monotonic() - start
        assert 0.25 <= took < 2.0
        assert 0 < stream.pending < len(data)
        # the peer reads again: a later write (any thread) sends the rest, then its own data
        got = bytearray()
        reader = threading.Thread(target=lambda: got.extend(_read_exactly(b, len(data) + 6)))
        reader.start()
        assert stream.write(b"PONG\r\n", deadline=time.monotonic() + 10) is True
        reader.join(10)
        assert bytes(got) == data + b"PONG\r\n"
        assert stream.pending == 0
    finally:
        a.close()
        b.close()


def test_write_after_close_raises_write_error():
    a, b = _pair_with_small_buffers()
    try:
        stream = SocketStream(a)
        stream.write(b"x" * (1 << 20), deadline=0.0)  # leaves bytes pending
        stream.close()
        with pytest.raises(WriteError):
            stream.write(b"more", deadline=None)
    finally:
        b.close()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_signals_that_raise_during_writes_never_duplicate_or_drop_bytes():
    """A timer signal whose handler raises strikes again and again while a large buffer goes
    through a slowly read socket: retrying after each interruption delivers every byte once."""

    class Tick(Exception):
        pass

    armed = [False]  # raise only inside stream.write(); the handler disarms before raising

    def handler(signum, frame):
        if armed[0]:
            armed[0] = False
            raise Tick

    a, b = _pair_with_small_buffers()
    data = b"".join(b"%08d" % i for i in range(64 * 1024))  # 512 KiB of numbered records
    got = bytearray()
    reader = threading.Thread(target=lambda: got.extend(_read_exactly(b, len(data), 30)))
    old = signal.signal(signal.SIGALRM, handler)
    interrupts = 0
    try:
        stream = SocketStream(a)
        assert stream.write(data, deadline=0.0) is False  # accepted; most of it still unsent
        reader.start()
        signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
        while True:
            try:
                armed[0] = True
                done = stream.write(b"")
                armed[0] = False
                if done:
                    break
            except Tick:
                interrupts += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
        reader.join(30)
        a.close()
        b.close()
    assert interrupts > 0
    assert bytes(got) == data
