"""Whether a box fits the limits of the parser that reads it, told before it is written.

The peer's parser refuses a header line longer than ``max_line_length``, more than
``max_headers`` header lines, header lines adding up to more than ``max_header_bytes`` and a
body over ``max_body_length`` (see ``Limits``), and a refusal ends the connection: every
request in flight on it fails, and the peer (a worker) exits. So whoever sends a box checks it
against those limits first: one request or answer too big fails alone, with
``LimitExceeded``, before a byte of it is written.

The sizes are the parser's own. A line is counted without its CRLF; a value's CRLF pairs start
continuation lines (each a space, then the rest); every line counts toward ``max_headers``
and, with its CRLF, toward ``max_header_bytes``; the frame's own lines (``-Command``,
``-Ask``, ``-Answer``, ``-Length``, ...) count too.

The check reads sizes only. No value is copied or encoded whole: ASCII text is measured by its
length, other text in slices, so refusing a 50 MB value costs no 50 MB. A box far below every
limit (the usual one) is told so by one pass over its lengths.
"""

from __future__ import annotations

from collections.abc import Mapping

from juicectl.juice._errors import LimitExceeded
from juicectl.juice._parser import Limits

__all__ = ["check_answer", "check_request", "fit_description", "utf8_size"]

#: How much of a non-ASCII text is encoded at once to measure it (characters).
_SLICE = 1 << 16
#: The most bytes a character takes in UTF-8.
_WIDEST = 4
#: What a trimmed error description ends with: how much was left out.
_TRIMMED = " [{:,} more characters not sent]"


def utf8_size(text: str, start: int = 0, end: int | None = None) -> int:
    """The UTF-8 size of ``text[start:end]`` in bytes, measured without encoding it whole."""
    stop = len(text) if end is None else end
    if text.isascii():
        return stop - start
    size = 0
    for at in range(start, stop, _SLICE):
        # surrogatepass: a lone surrogate is the serializer's to refuse, not a size error.
        size += len(text[at : min(at + _SLICE, stop)].encode("utf-8", "surrogatepass"))
    return size


def _body_hint(limits: Limits) -> str:
    return (
        "bulk data travels as the box's body: a field named 'body' "
        f"(up to max_body_length, {limits.max_body_length:,} bytes)"
    )


def check_request(limits: Limits, name: str, tag: str | None, fields: Mapping[str, str]) -> None:
    """Raise ``LimitExceeded`` if the request ``name`` (``-Ask: tag``, unless None) with
    ``fields`` (and their ``body``) would break ``limits``. Keys or values that are not text
    are left for the serializer to refuse."""
    # The quick answer, for the usual request: see _far_below.
    chars = len(name) if tag is None else len(name) + len(tag)
    if _far_below(limits, fields, chars):
        return
    name_line = utf8_size(name) + 10  # "-Command: " and the name
    if tag is None:
        frame, lines, longest = name_line + 2, 1, name_line
    else:
        tag_line = utf8_size(tag) + 6  # "-Ask: " and the tag
        frame, lines, longest = name_line + tag_line + 4, 2, max(name_line, tag_line)
    _check_carefully(limits, fields, lines, frame, longest, f"{name} not sent")


def check_answer(limits: Limits, tag: str, fields: Mapping[str, str]) -> None:
    """Raise ``LimitExceeded`` if an answer to ``tag`` with ``fields`` (and their ``body``)
    would break ``limits`` (see :func:`check_request`)."""
    if _far_below(limits, fields, len(tag)):
        return
    tag_line = utf8_size(tag) + 9  # "-Answer: " and the tag
    _check_carefully(limits, fields, 1, tag_line + 2, tag_line, "the answer was not sent")


def _far_below(limits: Limits, fields: Mapping[str, str], chars: int) -> bool:
    """Whether a box without a body whose frame holds ``chars`` characters of names and tags
    fits ``limits`` whatever its text is made of: one pass over the lengths.

    At most 4 bytes a character, and a few bytes per line for ": ", CRLF and the frame's
    headers (``-Command: ``... 32 bytes in all cover them), all of it within one line's
    length: no line is too long, and neither are all of them together (``max_header_bytes``
    is at least ``max_line_length``). At most one continuation line per two characters.
    """
    if getattr(fields, "body", None) is not None:
        return False
    try:
        for key, value in fields.items():
            chars += len(key) + len(value)
    except TypeError:
        return True  # not text: the serializer says what is wrong with it
    count = len(fields)
    return (
        _WIDEST * (chars + count) + 32 <= limits.max_line_length
        and count + 2 + chars // 2 <= limits.max_headers
    )


def _check_carefully(
    limits: Limits,
    fields: Mapping[str, str],
    lines: int,
    size: int,
    frame_longest: int,
    what: str,
) -> None:
    """For a box that may not fit: each line measured as the parser counts it. ``lines``,
    ``size`` and ``frame_longest`` are the frame's header lines, their bytes (CRLFs included)
    and the longest of them (CRLF excluded)."""
    body = getattr(fields, "body", None)
    max_line, max_headers = limits.max_line_length, limits.max_headers
    if frame_longest > max_line:
        raise LimitExceeded(
            f"{what}: a line of its frame (the command name, or the tag) is {frame_longest:,} "
            f"bytes, over max_line_length ({max_line:,} bytes)"
        )
    largest, largest_size = "", -1
    for key, value in fields.items():
        if type(key) is not str or type(value) is not str:
            continue  # the serializer refuses it
        head = utf8_size(key) + 2  # "Key: "
        field_size = 0
        breaks = value.count("\r\n") if "\n" in value else 0
        if lines + 1 + breaks > max_headers:
            raise LimitExceeded(
                f"{what}: field {key!r} holds {breaks:,} line breaks, each a header line of its "
                f"own, {lines + 1 + breaks:,} lines in all, over max_headers ({max_headers:,}); "
                + _body_hint(limits)
            )
        if not breaks:
            # One line: measured with no search. A two-character search (find("\r\n")) walks
            # a long value at about a nanosecond a character: 60 µs for a 60 KB value.
            line = head + utf8_size(value)
            if line > max_line:
                raise LimitExceeded(
                    f"{what}: field {key!r} is {line - head:,} bytes and makes a header line "
                    f"of {line:,} bytes, over max_line_length ({max_line:,} bytes); "
                    + _body_hint(limits)
                )
            lines += 1
            size += line + 2
            if line + 2 > largest_size:
                largest, largest_size = key, line + 2
            continue
        start = 0
        for _ in range(breaks + 1):
            stop = value.find("\r\n", start)
            if stop < 0:
                stop = len(value)
            # The first line is "Key: text", a continuation line " text".
            line = (head if start == 0 else 1) + utf8_size(value, start, stop)
            if line > max_line:
                where = "a header line" if breaks == 0 else "a line"
                raise LimitExceeded(
                    f"{what}: field {key!r} is {utf8_size(value):,} bytes and makes {where} of "
                    f"{line:,} bytes, over max_line_length ({max_line:,} bytes); "
                    + _body_hint(limits)
                )
            field_size += line + 2
            start = stop + 2
        lines += 1 + breaks
        size += field_size
        if field_size > largest_size:
            largest, largest_size = key, field_size
    if body is not None:
        if len(body) > limits.max_body_length:
            raise LimitExceeded(
                f"{what}: the body is {len(body):,} bytes, over max_body_length "
                f"({limits.max_body_length:,} bytes): send it in parts"
            )
        lines += 1
        size += len(f"-Length: {len(body)}\r\n")
    if lines > max_headers:
        raise LimitExceeded(
            f"{what}: {lines:,} header lines, over max_headers ({max_headers:,}); "
            + _body_hint(limits)
        )
    if size > limits.max_header_bytes:
        raise LimitExceeded(
            f"{what}: the header lines add up to {size:,} bytes (field {largest!r}: "
            f"{largest_size:,}), over max_header_bytes ({limits.max_header_bytes:,} bytes); "
            + _body_hint(limits)
        )


def fit_description(description: str, limits: Limits) -> str:
    """``description`` (an error answer's text, its line breaks CRLF already), cut short if
    it would break ``limits``: an error answer must always get through."""
    # The whole text within one line's room ("-Error-Description: " is 20 bytes), leaving
    # the error's other lines (tag, code) room among the header bytes and lines.
    room = min(limits.max_line_length - 20, limits.max_header_bytes - 256)
    most_lines = max(1, limits.max_headers - 3)
    size = utf8_size(description)
    if size <= room and description.count("\r\n") < most_lines:
        return description
    room -= len(_TRIMMED) + 12  # the note of what was cut
    keep = max(0, room if description.isascii() else room // _WIDEST)
    keep = min(keep, len(description))
    if description.count("\r\n", 0, keep) >= most_lines:
        # Cut before the line break that would start one line too many.
        at = -2
        for _ in range(most_lines):
            at = description.find("\r\n", at + 2, keep)
        keep = at
    if keep and description[keep - 1] == "\r":
        keep -= 1  # never half a CRLF: a lone CR cannot be sent
    return description[:keep] + _TRIMMED.format(len(description) - keep)
