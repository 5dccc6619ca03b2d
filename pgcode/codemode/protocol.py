"""The wire between the server and a sandbox worker: length-prefixed frames of JSON, never pickle.

A frame is a 9-byte header (body length, kind, an unsigned 32-bit argument) and the body. The server
reads frames with a deadline and a size cap, so a worker that stalls or floods is killed, not waited on;
an execution the server gives up on (deadline, forged request, call cap) also ends with a kill.
This module is imported by the worker too: standard library only.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from enum import IntEnum

HEADER = struct.Struct("!IBI")
MAX_FRAME = 24 * 1024 * 1024
"""Largest body either side accepts: a 10 MB result plus logs, or a batch of tool results."""


class Kind(IntEnum):
    # server -> worker
    RUN = 1  # body: {"code", "input", "args"}; arg: time budget in ms
    RESULTS = 2  # body: {"r": [[id, ok, value], ...]}, the results of one CALLS batch; arg: budget in ms
    # worker -> server
    CALLS = 10  # body: {"calls": [[id, tool, argsJson], ...], "logs": [...]}
    DONE = 11  # body: meta JSON; arg: its length; then the result's JSON text (may be empty)


class ProtocolError(Exception):
    """The other side broke the framing: the connection cannot be trusted any more."""


# -- worker side: blocking socket --------------------------------------------------------------------

def send_frame(sock: socket.socket, kind: Kind, body: bytes, arg: int = 0) -> None:
    sock.sendall(HEADER.pack(len(body), kind, arg) + body)


def recv_frame(sock: socket.socket) -> tuple[Kind, int, bytes]:
    """Read one frame; raise EOFError when the server has gone. A small frame comes in one recv() with its
    header (the server sends each frame in one write): one system call per frame, not two."""
    first = sock.recv(_FIRST_READ)
    if not first:
        raise EOFError
    if len(first) < HEADER.size:
        first += _recv_exactly(sock, HEADER.size - len(first))
    length, kind, arg = HEADER.unpack_from(first)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes")
    body = first[HEADER.size:]
    if len(body) > length:
        raise ProtocolError("the server sent more than one frame at once")
    if len(body) < length:
        body += _recv_exactly(sock, length - len(body))
    return Kind(kind), arg, body


_FIRST_READ = 64 * 1024


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError
        got += k
    return bytes(buf)


# -- server side: asyncio streams --------------------------------------------------------------------

async def read_frame(reader: asyncio.StreamReader) -> tuple[Kind, int, bytes]:
    """Read one frame from an untrusted worker; the caller bounds the wait with a timeout."""
    try:
        length, kind, arg = HEADER.unpack(await reader.readexactly(HEADER.size))
        if length > MAX_FRAME:
            raise ProtocolError(f"the worker sent a frame of {length} bytes")
        try:
            frame_kind = Kind(kind)
        except ValueError:
            raise ProtocolError(f"the worker sent an unknown frame kind {kind}") from None
        return frame_kind, arg, await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise EOFError from None


def write_frame(writer: asyncio.StreamWriter, kind: Kind, body: bytes, arg: int = 0) -> None:
    """Queue a frame; the caller awaits writer.drain() (bounded by its deadline like every read)."""
    writer.write(HEADER.pack(len(body), kind, arg) + body)
