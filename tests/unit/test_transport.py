"""The write path never leaves half a frame on the socket, even when Ctrl-C strikes."""

from __future__ import annotations

import socket

import pytest

from memphis_sync.errors import WriteError
from memphis_sync.transport import SocketStream


class _FlakySocket:
    """Accepts a few bytes per send; raises KeyboardInterrupt once, like a signal handler."""

    def __init__(self, interrupt_at_call: int, error_at_call: int = -1) -> None:
        self.received = bytearray()
        self.calls = 0
        self.interrupt_at_call = interrupt_at_call
        self.error_at_call = error_at_call

    def gettimeout(self):
        return None

    def send(self, data) -> int:
        self.calls += 1
        if self.calls == self.interrupt_at_call:
            raise KeyboardInterrupt
        if self.calls == self.error_at_call:
            raise ConnectionResetError("peer reset")
        chunk = bytes(data[:7])
        self.received += chunk
        return len(chunk)


def test_interrupt_mid_write_finishes_the_frames_then_reraises():
    sock = _FlakySocket(interrupt_at_call=3)
    frames = b"PUB a 5\r\nhello\r\n" * 5
    with pytest.raises(KeyboardInterrupt):
        SocketStream(sock).write(frames)  # type: ignore[arg-type]
    assert bytes(sock.received) == frames  # every byte went out, in order, before the re-raise


def test_socket_errors_become_write_errors():
    sock = _FlakySocket(interrupt_at_call=-1, error_at_call=2)
    with pytest.raises(WriteError, match="peer reset"):
        SocketStream(sock).write(b"x" * 50)  # type: ignore[arg-type]


def test_real_socket_pair_roundtrip():
    a, b = socket.socketpair()
    try:
        data = bytes(range(256)) * 4096  # 1 MiB: several send() calls
        import threading

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
