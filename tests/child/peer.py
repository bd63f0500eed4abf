"""The parent's side of a conversation with a child, played with raw codec bytes.

Every read is bounded by a timeout, so a child that hangs fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import select
import time
from collections import deque
from typing import Any

from juicectl.juice import (
    Answer,
    Box,
    BoxParser,
    Command,
    ErrorAnswer,
    Request,
    answer_bytes,
    classify,
    error_bytes,
    request_bytes,
)

Message = Answer | ErrorAnswer | Request


class Peer:
    """Writes requests to ``write_fd`` and reads boxes from ``read_fd``."""

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd: int | None = write_fd
        self.read_fd = read_fd
        self._parser = BoxParser()
        self._boxes: deque[Box] = deque()
        self.eof = False

    def send(self, data: bytes) -> None:
        assert self.write_fd is not None, "input already closed"
        view = memoryview(data)
        while view:
            view = view[os.write(self.write_fd, view) :]

    def request(self, command: type[Command], tag: str | None = "1", **kwargs: Any) -> None:
        self.send(request_bytes(command, tag, command.make_arguments(kwargs)))

    def answer(self, command: type[Command], tag: str, **kwargs: Any) -> None:
        self.send(answer_bytes(tag, command.make_response(kwargs)))

    def error(self, tag: str, code: str, description: str) -> None:
        self.send(error_bytes(tag, code, description))

    def close_input(self) -> None:
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the child did not answer in time")
        readable, _, _ = select.select([self.read_fd], [], [], remaining)
        if not readable:
            raise TimeoutError("the child did not answer in time")
        data = os.read(self.read_fd, 65536)
        if not data:
            self.eof = True
        self._boxes.extend(self._parser.feed(data))

    def read_boxes(self, count: int, timeout: float = 10.0) -> list[Box]:
        """Return the next ``count`` boxes; fail if the stream ends first."""
        deadline = time.monotonic() + timeout
        while len(self._boxes) < count:
            if self.eof:
                raise AssertionError(f"the stream ended after {len(self._boxes)} of {count} boxes")
            self._fill(deadline)
        return [self._boxes.popleft() for _ in range(count)]

    def read(self, timeout: float = 10.0) -> Message:
        """Return the next box, classified."""
        return classify(self.read_boxes(1, timeout)[0])

    def read_answer(self, tag: str, timeout: float = 10.0) -> Box:
        """Return the fields of the next box, which must answer ``tag``."""
        message = self.read(timeout)
        assert isinstance(message, Answer), message
        assert message.tag == tag, message
        return message.box

    def read_to_eof(self, timeout: float = 10.0) -> list[Box]:
        """Return every box left until the child closes the stream."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            self._fill(deadline)
        boxes = list(self._boxes)
        self._boxes.clear()
        return boxes
