"""A first end-to-end pass over the codec: the reference transcripts, request to answer."""

from __future__ import annotations

from juicectl.juice import BoxParser, Command, Request, Responders, String, classify


class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]


class EchoHandler:
    @Echo.responder
    def echo(self, value: str) -> dict[str, str]:
        return {"value": value}


TRANSCRIPTS = [
    (
        b"-Command: Echo\r\n-Ask: fe\r\nValue: a\r\n b\r\n\r\n",
        b"Value: a\r\n b\r\n-Answer: fe\r\n\r\n",
        False,
    ),
    (
        b"-Command: Negotiate\r\n-Ask: 11\r\nVersions: 1\r\n\r\n",
        b"Version: 1\r\n-Answer: 11\r\n\r\n",
        False,
    ),
    (
        b"-Command: Nope\r\n-Ask: fd\r\n\r\n",
        b"-Error: fd\r\n-Error-Description: Unhandled Remote System Exception \r\n"
        b"-Error-Code: UNHANDLED\r\n\r\n",
        True,
    ),
]


def test_reference_transcripts() -> None:
    responders = Responders(EchoHandler())
    for request, answer, close in TRANSCRIPTS:
        [box] = BoxParser().feed(request)
        request_event = classify(box)
        assert isinstance(request_event, Request)
        reply = responders.handle(request_event)
        assert reply.data == answer
        assert reply.close is close
