"""Pipelined SFTP reads with a bound on how far they run ahead of the reader.

paramiko's ``SFTPFile.prefetch`` asks for the whole rest of the file at once: one request
per 32 KB, all sent at the start, so a 100 GB file means three million requests held on
our side and a server that may buffer whatever it has read for them. Its
``max_concurrent_requests`` bound races (the prefetch thread sleeps 10 ms at the bound;
a fast reader drains every reply in that time, prefetching is taken as finished and the
rest of the file piles up unread in memory: paramiko/paramiko#2519).

:class:`ReadAhead` keeps at most ``depth`` requests in flight, sends the next one as each
reply is consumed, and needs no thread. It uses the request/reply calls ``SFTPFile``
itself is built on (``_async_request``, ``_read_response``), stable since paramiko 1.x.
"""

from __future__ import annotations

from collections import deque

import paramiko
from paramiko.message import Message
from paramiko.sftp import CMD_DATA, CMD_READ, CMD_STATUS, SFTPError, int64

BLOCK = 32 * 1024  # the read size every SFTP server must honour (draft-ietf-secsh-filexfer)


class ReadAhead:
    """``read()`` returns the file's next bytes from ``offset`` on, ``b""`` at its end.

    ``size`` (when known) saves the requests past the end; without it, reading stops at
    the server's end-of-file reply.
    """

    def __init__(self, remote: paramiko.SFTPFile, offset: int, size: int | None, depth: int):
        self._sftp, self._handle = remote.sftp, remote.handle
        self._asked = offset  # the next byte to ask for
        self._end = size
        self._depth = depth
        self._in_flight: deque[tuple[int, int, int]] = deque()  # (request, offset, length)
        self._replies: dict[int, tuple[int, Message]] = {}
        self._done = False

    def read(self, _size: int = BLOCK) -> bytes:
        while not self._done:
            self._ask()
            if not self._in_flight:
                return b""
            number, offset, length = self._in_flight.popleft()
            data = self._reply_to(number)
            if data is None:  # end of file
                self._done = True
                return b""
            if len(data) < length:  # a short read: ask again for what is missing
                self._send(offset + len(data), length - len(data), first=True)
            if data:
                return data
        return b""

    def _ask(self) -> None:
        while len(self._in_flight) < self._depth and (self._end is None or self._asked < self._end):
            length = BLOCK if self._end is None else min(BLOCK, self._end - self._asked)
            self._send(self._asked, length)
            self._asked += length

    def _send(self, offset: int, length: int, first: bool = False) -> None:
        args = (self._handle, int64(offset), int(length))
        number = self._sftp._async_request(self, CMD_READ, *args)
        entry = (number, offset, length)
        if first:
            self._in_flight.appendleft(entry)
        else:
            self._in_flight.append(entry)

    def _reply_to(self, number: int) -> bytes | None:
        """The data of request ``number`` (replies come in any order); None at the end."""
        while number not in self._replies:
            self._sftp._read_response()
        kind, message = self._replies.pop(number)
        if kind == CMD_STATUS:
            try:
                self._sftp._convert_status(message)  # raises IOError for a failure
            except EOFError:
                return None
            return b""
        if kind != CMD_DATA:
            raise SFTPError(f"expected data, got SFTP message type {kind}")
        data: bytes = message.get_string()
        return data

    def _async_response(self, kind: int, message: Message, number: int) -> None:
        """Called by paramiko's reply loop for each reply to our requests."""
        self._replies[number] = (kind, message)
