"""The worker's side of the frame protocol: a frame read whole whatever pieces the socket hands over, and
a peer that breaks the framing refused."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from pgcode.codemode.protocol import HEADER, MAX_FRAME, Kind, ProtocolError, recv_frame, send_frame


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


def _frame(kind: Kind, body: bytes, arg: int = 0) -> bytes:
    return HEADER.pack(len(body), kind, arg) + body


def test_a_frame_and_the_next_one(pair: tuple[socket.socket, socket.socket]) -> None:
    server, worker = pair
    send_frame(server, Kind.RESULTS, b'{"r":[]}', 250)
    assert recv_frame(worker) == (Kind.RESULTS, 250, b'{"r":[]}')
    send_frame(server, Kind.RUN, b"", 7)
    assert recv_frame(worker) == (Kind.RUN, 7, b"")


def test_a_frame_in_pieces_is_read_whole(pair: tuple[socket.socket, socket.socket]) -> None:
    server, worker = pair
    body = bytes(range(256)) * 2000  # 512 KB: more than one read, and more than the socket buffers at once
    data = _frame(Kind.RESULTS, body, 9)
    pieces = [data[:3], data[3:HEADER.size + 5], data[HEADER.size + 5:]]  # even the header split in two

    def send() -> None:
        for piece in pieces:
            server.sendall(piece)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert recv_frame(worker) == (Kind.RESULTS, 9, body)
    finally:
        sender.join()


def test_the_server_gone_is_eof(pair: tuple[socket.socket, socket.socket]) -> None:
    server, worker = pair
    server.sendall(_frame(Kind.RESULTS, b"12345")[:HEADER.size + 2])  # half a frame, then nothing
    server.shutdown(socket.SHUT_WR)
    with pytest.raises(EOFError):
        recv_frame(worker)


def test_two_frames_at_once_or_one_too_large_are_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    server, worker = pair
    server.sendall(_frame(Kind.RESULTS, b"{}") + _frame(Kind.RESULTS, b"{}"))  # the server sends one at a time
    with pytest.raises(ProtocolError):
        recv_frame(worker)
    server.sendall(HEADER.pack(MAX_FRAME + 1, Kind.RESULTS, 0))
    with pytest.raises(ProtocolError):
        recv_frame(worker)
