"""A worker never sends what the parent's parser would refuse: an answer too big becomes an
error answer naming the field, its size and the limit, and the conversation goes on.

The runtime's limits bind both ways and default to the parent's own (``Limits()``): the
boundary tests meet the default ``max_line_length`` exactly from both sides.
"""

from __future__ import annotations

import gc
import inspect
import tracemalloc
from collections.abc import Callable

import pytest

from juicectl.child import run, serve
from juicectl.juice import (
    LIMIT_EXCEEDED_CODE,
    Answer,
    ErrorAnswer,
    Limits,
    Request,
)
from juicectl.policy import ConnectionOptions

from .conftest import Child, Served
from .limit_workers import (
    AskParentBig,
    Blob,
    Complain,
    ComplainOfAFileName,
    Echo,
    Grow,
    LimitWorker,
)

Serving = Callable[..., Served]

#: A line of "Value: " and this many characters is exactly the default max_line_length.
AT_LIMIT = Limits().max_line_length - len("Value: ")


def test_the_runtime_defaults_are_the_parents() -> None:
    # None means Limits() at both ends; the boundary test below shows they agree on the wire.
    assert ConnectionOptions().limits is None
    for entry in (serve, run):
        assert inspect.signature(entry).parameters["limits"].default is None


def test_an_answer_past_the_limit_becomes_an_error_and_the_worker_goes_on(
    serving: Serving,
) -> None:
    served = serving(LimitWorker(), limits=Limits(max_line_length=1000))
    peer = served.peer
    peer.request(Grow, "1", size=1000)
    error = peer.read()
    assert isinstance(error, ErrorAnswer) and error.tag == "1"
    assert error.code == LIMIT_EXCEEDED_CODE
    assert error.description.startswith("Grow: the answer was not sent: field 'value'")
    assert "1,000 bytes" in error.description
    assert "max_line_length (1,000 bytes)" in error.description
    assert "body" in error.description
    # The conversation goes on: the next request is answered.
    peer.request(Echo, "2", value="still here")
    assert peer.read_answer("2") == {"value": "still here"}
    peer.request(Grow, "3", size=993)  # "Value: " and 993 characters: 1,000 bytes
    assert peer.read_answer("3") == {"value": "x" * 993}


def test_a_body_past_max_body_length_is_refused_the_same_way(serving: Serving) -> None:
    served = serving(LimitWorker(), limits=Limits(max_body_length=100))
    served.peer.request(Blob, "1", size=101)
    error = served.peer.read()
    assert isinstance(error, ErrorAnswer) and error.code == LIMIT_EXCEEDED_CODE
    assert "body is 101 bytes, over max_body_length (100 bytes)" in error.description
    served.peer.request(Blob, "2", size=100)
    assert served.peer.read_answer("2").body == b"b" * 100


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_refused_answer_costs_no_copy_of_the_value(
    serving: Serving, concurrency: int
) -> None:
    size = 8 << 20
    worker = LimitWorker()
    worker.value_of(size)  # made before the measurement: the handler only returns it
    served = serving(worker, concurrency=concurrency)
    served.peer.request(Echo, "0", value="warm")
    served.peer.read_answer("0")
    gc.collect()
    tracemalloc.start()
    try:
        served.peer.request(Grow, "1", size=size)
        error = served.peer.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(error, ErrorAnswer) and error.code == LIMIT_EXCEEDED_CODE
    # Serializing the value would have copied it at least once (8 MiB); nothing near that.
    assert peak < size // 8, f"{peak:,} bytes allocated to refuse an answer of {size:,}"


def test_a_declared_error_with_a_huge_message_is_cut_to_fit(serving: Serving) -> None:
    limits = Limits(max_line_length=4096, max_header_bytes=8192)
    served = serving(LimitWorker(), limits=limits)
    served.peer.request(Complain, "1", size=100_000)
    error = served.peer.read()
    assert isinstance(error, ErrorAnswer) and error.code == "COMPLAINT"
    assert error.description.startswith("c" * 1000)
    assert error.description.endswith("more characters not sent]")
    served.peer.request(Echo, "2", value="on")
    assert served.peer.read_answer("2") == {"value": "on"}


def test_a_declared_error_naming_an_undecodable_file_name_is_sent_escaped(
    serving: Serving,
) -> None:
    served = serving(LimitWorker())
    served.peer.request(ComplainOfAFileName, "1")
    error = served.peer.read()
    assert isinstance(error, ErrorAnswer) and error.code == "COMPLAINT"
    assert error.description == "not indexed: report-\\udcff.txt"
    served.peer.request(Echo, "2", value="still serving")
    assert served.peer.read_answer("2") == {"value": "still serving"}


def test_a_call_to_the_parent_past_its_limits_is_refused_before_it_is_sent(
    serving: Serving,
) -> None:
    served = serving(LimitWorker(), limits=Limits(max_line_length=1000))
    served.peer.request(AskParentBig, "1", size=5000)
    # The next box is the answer: no request reached the parent.
    answer = served.peer.read()
    assert isinstance(answer, Answer), answer
    assert answer.box["outcome"].startswith("refused: Echo not sent: field 'value'")
    served.peer.request(AskParentBig, "2", size=10)
    request = served.peer.read()
    assert isinstance(request, Request) and request.command == "Echo"


def test_the_default_limits_meet_the_parents_at_the_boundary(spawn: Callable[..., Child]) -> None:
    # A real child with the default limits, read by the test's peer, whose parser has the
    # codec's defaults: the parent's.
    child = spawn("tests.child.limit_workers:LimitWorker")
    parser_limits = ConnectionOptions().limits or Limits()
    child.peer.request(Grow, "1", size=AT_LIMIT)
    assert child.peer.read_answer("1", timeout=30) == {"value": "x" * AT_LIMIT}
    child.peer.request(Grow, "2", size=AT_LIMIT + 1)
    error = child.peer.read(timeout=30)
    assert isinstance(error, ErrorAnswer) and error.code == LIMIT_EXCEEDED_CODE
    assert f"max_line_length ({parser_limits.max_line_length:,} bytes)" in error.description
    child.peer.request(Echo, "3", value="alive")
    assert child.peer.read_answer("3") == {"value": "alive"}
    assert child.process.poll() is None
