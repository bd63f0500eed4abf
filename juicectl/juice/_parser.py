"""The incremental, sans-IO box parser.

Bytes go in through :meth:`BoxParser.feed`, complete boxes come out; ``feed(b"")`` means the
stream has ended. The parser never reads, writes, sleeps or logs.

Why it looks the way it does:

* Speed. The hot loop works on one ``bytes`` object with ``bytes.find``, so the per-byte work
  happens in C. Line ends are found with a one-byte search for the LF (``memchr``, which skims
  tens of bytes per nanosecond) and a look at the byte before it: a two-byte search such as
  ``find(b"\\r\\n")``, ``split`` or ``in`` walks byte by byte (about 1 ns each), which made a
  60,000-byte value cost over 100 microseconds per pass. The whole-block and whole-run fast
  paths, which do make such passes (and a four-byte pattern, which skips ahead on ordinary
  text, to find where boxes end), look at a bounded window only. Data that does not
  complete a line (or a body) is appended to a ``bytearray`` and only searched from where the
  previous search stopped, so feeding one byte at a time stays linear.
* Bounded memory. The reference peer sets no enforced limit; a hostile peer could make it
  allocate without bound. Here a line longer than ``max_line_length`` is refused as soon as that
  many bytes arrive without a CRLF, a ``-Length`` above ``max_body_length`` is refused when its
  header line is read (before any of the body is buffered), and a box with more than
  ``max_headers`` header lines, or whose header lines add up to more than
  ``max_header_bytes``, is refused. The fast paths hold every limit too, so that how a
  hostile peer cuts its bytes never decides what is accepted: their windows are no longer
  than ``max_line_length`` and ``max_header_bytes`` allow, and what they cannot vouch for
  they leave to the careful path.
* No resynchronisation. After an error the stream position is unknown, so the parser keeps
  the error and raises it again on every later call: the connection has to end.
"""

from __future__ import annotations

import functools
import re
from typing import NoReturn

from juicectl.juice._box import Box, normalize_key
from juicectl.juice._errors import LimitExceeded, MalformedBox, ProtocolError, TruncatedBox
from juicectl.juice._frozen import FrozenRecord

__all__ = ["BoxParser", "Limits"]

_LF = b"\n"
_END = b"\r\n\r\n"
#: The most bytes of a header block the whole-block fast path takes (it searches, decodes and
#: splits with multi-byte patterns, about 1 ns per byte each); bigger blocks go line by line.
_BLOCK_WINDOW = 4096
#: Header blocks up to this long are looked for with one multi-byte search.
_SHORT_BLOCK = 512
#: How much of a read one whole-run attempt takes; runs repeat while they make progress.
_RUN_WINDOW = 16384
_new_box = dict.__new__
#: Glues continuation lines to their header line with a NUL: on a run of boxes (a few KiB) the
#: regular expression engine does it in about half the time ``str.replace`` takes.
_glue = functools.partial(re.compile("\r\n ").sub, "\0")
_SEP = b": "
_SPACE = 0x20
_CR = 0x0D

#: Normalised forms of raw header names seen so far, shared by every parser (the mapping is a
#: pure function, so sharing is safe). Bounded so that distinct keys cannot grow it forever.
_KEYS: dict[bytes, str] = {}
_KEYS_MAX = 4096
_KEY_CACHE_MAX_LENGTH = 128


class Limits(FrozenRecord):
    """Limits a :class:`BoxParser` enforces; breaking one raises :class:`LimitExceeded`.

    Attributes:
        max_line_length: the longest header line accepted, in bytes, CRLF excluded.
        max_body_length: the largest ``-Length`` accepted, in bytes.
        max_headers: the most header lines (continuation lines included) in one box.
        max_header_bytes: the most bytes of header lines in one box, all lines together,
            each with its CRLF (so a box's headers never take more memory than this, whatever
            their count).

    Every limit holds however the bytes arrive: a box is accepted or refused by what it
    holds, whether it comes in one read with many others or one byte at a time.

    Immutable, compared and hashed by its four values; ``replace()`` makes a changed copy.
    """

    __match_args__ = ("max_line_length", "max_body_length", "max_headers", "max_header_bytes")
    __slots__ = __match_args__

    max_line_length: int
    max_body_length: int
    max_headers: int
    max_header_bytes: int

    def __init__(
        self,
        max_line_length: int = 1 << 20,
        max_body_length: int = 64 << 20,
        max_headers: int = 4096,
        max_header_bytes: int = 16 << 20,
    ) -> None:
        values = {
            "max_line_length": max_line_length,
            "max_body_length": max_body_length,
            "max_headers": max_headers,
            "max_header_bytes": max_header_bytes,
        }
        for name, value in values.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, not {value!r}")
            object.__setattr__(self, name, value)
        if max_header_bytes < max_line_length:
            raise ValueError(
                f"Limits.max_header_bytes ({max_header_bytes}) must be at least "
                f"max_line_length ({max_line_length})"
            )

    def replace(self, **changes: int) -> Limits:
        """A copy with ``changes`` (limits by name) applied, checked as a new one is."""
        unknown = sorted(set(changes) - set(self.__match_args__))
        if unknown:
            raise TypeError(f"Limits has no limit named {', '.join(map(repr, unknown))}")
        values = {name: getattr(self, name) for name in self.__match_args__}
        return Limits(**{**values, **changes})


_DEFAULT_LIMITS = Limits()


class _KeyCache(dict[str, str]):
    """Header name -> normalised key, filled on first use and bounded in size.

    Args:
        refused: a normalised key this cache refuses (a KeyError), as it refuses a
            continuation line with no header and a NUL glued into a name.
    """

    def __init__(self, refused: str = "") -> None:
        super().__init__()
        self._refused = refused

    def __missing__(self, name: str) -> str:
        if name[:1] == " " or "\0" in name:
            # A continuation line with no header, or one glued into a name.
            raise KeyError(name)
        key = normalize_key(name)
        if key == self._refused:
            raise KeyError(name)
        if len(self) < _KEYS_MAX and len(name) <= _KEY_CACHE_MAX_LENGTH:
            self[name] = key
        return key


_TEXT_KEYS = _KeyCache()
#: For runs of body-less boxes: a -Length header (any spelling) ends the run.
_RUN_KEYS = _KeyCache(refused="_length")


def _decode_key(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBox(f"header name is not valid UTF-8: {raw[:80]!r}") from None
    key = normalize_key(text)
    if len(_KEYS) < _KEYS_MAX and len(raw) <= _KEY_CACHE_MAX_LENGTH:
        _KEYS[raw] = key
    return key


def _parse_length(value: str, limit: int) -> int:
    if not value or not value.isascii() or not value.isdigit():
        raise MalformedBox(f"-Length is not a non-negative decimal integer: {value[:40]!r}")
    digits = value.lstrip("0")
    # Compare digit counts first: never convert a huge string of digits to an int.
    if len(digits) > len(str(limit)) or int(digits or "0") > limit:
        raise LimitExceeded(f"-Length {value[:40]} exceeds max_body_length ({limit} bytes)")
    return int(digits or "0")


def _find_crlf(data: bytes | bytearray, pos: int) -> int:
    """Index of the first CRLF at or after ``pos``, or -1.

    Searches for the LF alone (memchr) and checks the byte before it, skipping a lone LF
    inside a value: far faster than ``find(b"\\r\\n")`` on long lines (see the module
    docstring).
    """
    find = data.find
    lf = find(_LF, pos + 1)
    while lf > 0 and data[lf - 1] != _CR:
        lf = find(_LF, lf + 1)
    return lf - 1 if lf > 0 else -1


def _last_end(data: bytes, pos: int, limit: int) -> int:
    """Where the last blank line (CRLF CRLF) within ``data[pos:limit]`` ends, or -1.

    A four-byte pattern skips ahead several bytes per step on ordinary text, so searching
    back from the window's end costs far less than a walk over its line ends would.
    """
    stop = len(data) if limit >= len(data) else limit
    if stop - pos >= 4 and data[stop - 4 : stop] == _END:
        return stop  # the usual case: a read ends where a box does
    # Up to the last LF only (memrchr): inside a long value there is none to search back to.
    found = data.rfind(_END, pos, data.rfind(_LF, pos, stop) + 1)
    return found + 4 if found >= 0 else -1


def _box_from_block(text: str, max_headers: int) -> Box | None:
    """Return the box of a complete header block (its lines, without the blank line).

    Continuation lines are glued to their header line with a NUL first, so that one split
    gives the logical lines; the NULs become CRLF again in the values. ``None`` when the block
    is in any way unusual (a line without ``": "``, a repeated key, a continuation with no
    header...): the careful path then parses it and gives the precise error.
    """
    glued = 0
    if "\r\n " in text:
        if "\0" in text:
            return None  # a real NUL: the marker would be ambiguous
        size = len(text)
        text = text.replace("\r\n ", "\0")  # faster than _glue on one block
        glued = (size - len(text)) >> 1
    lines = text.split("\r\n")
    if len(lines) + glued > max_headers:
        return None  # continuation lines count as header lines too
    box: Box = _new_box(Box)
    keys = _TEXT_KEYS
    try:
        for line in lines:
            # No ": " in the line: one item, a ValueError. A name the cache refuses (a
            # continuation with no header, a NUL glued into a name): a KeyError.
            name, value = line.split(": ", 1)
            box[keys[name]] = value
    except (ValueError, KeyError):
        return None
    if len(box) != len(lines):
        return None  # a repeated key: the careful path applies each line in order
    if glued:
        for key, value in box.items():
            if "\0" in value:
                box[key] = value.replace("\0", "\r\n")
    return box


def _run_of_boxes(data: bytes, pos: int, out: list[Box], limits: Limits) -> int:
    """Parse a run of complete, body-less, all-ASCII boxes in one pass; return the new pos.

    This is the common case of a busy connection: many small boxes in one read. One decode,
    one substitution (to glue continuation lines to their header line with a NUL), one split
    into lines for the whole run; blank lines end boxes. If anything at all is unusual, the boxes
    parsed here are dropped again and ``pos`` is returned unchanged for the per-box path.
    """
    # A body: the per-box path reads it by its length. Looked for near the start first (a
    # short search that finds a box with a body at once), then, once the cut is known, in
    # the rest of what the run would take; the run then stops at the box before.
    find = data.find
    if find(b"-Length: ", pos, pos + _SHORT_BLOCK) >= 0:
        return pos
    # Complete boxes only: cut after the window's last blank line. A box within the cut
    # takes at most ``cut - pos`` bytes, its blank line included, so a window of at most
    # ``max_header_bytes + 2`` bounds every box's header bytes without counting them.
    span = limits.max_header_bytes + 2
    cut = _last_end(data, pos, pos + (span if span < _RUN_WINDOW else _RUN_WINDOW))
    if cut < 0:
        return pos
    body = find(b"-Length: ", pos + _SHORT_BLOCK - 8, cut)
    if body >= 0:
        cut = _last_end(data, pos, body)
        if cut < 0:
            return pos
    chunk = data[pos:cut] if pos or cut < len(data) else data
    if not chunk.isascii():
        return pos  # characters would not be bytes: positions could not be computed
    text = chunk.decode("ascii")
    glued = 0
    if "\r\n " in text:
        if "\0" in text:
            return pos  # a real NUL: the marker would be ambiguous
        size = len(text)
        text = _glue(text)
        glued = (size - len(text)) >> 1
    room = limits.max_headers - glued  # continuation lines count as header lines
    if room < 1:
        return pos
    lines = text.split("\r\n")
    lines.pop()  # the empty string after the final CRLF
    if len(text) > limits.max_line_length and max(map(len, lines)) > limits.max_line_length:
        return pos
    first = len(out)
    append = out.append
    keys = _RUN_KEYS
    box: Box = _new_box(Box)
    # No ": " in a line: one item, a ValueError. A name the cache refuses (a continuation with
    # no header, a NUL glued into a name, a -Length whatever its case): a KeyError. Two copies
    # of the loop, so that runs without continuation lines pay nothing for them.
    try:
        if glued:
            for line in lines:
                if line:
                    name, value = line.split(": ", 1)
                    box[keys[name]] = value.replace("\0", "\r\n") if "\0" in value else value
                else:
                    append(box)
                    box = _new_box(Box)
        else:
            for line in lines:
                if line:
                    name, value = line.split(": ", 1)
                    box[keys[name]] = value
                else:
                    append(box)
                    box = _new_box(Box)
    except (ValueError, KeyError):
        del out[first:]
        return pos
    boxes = out[first:]
    if sum(map(len, boxes)) + len(boxes) != len(lines) or max(map(len, boxes), default=0) > room:
        # A repeated key (the careful path applies each line in order), or too many headers.
        del out[first:]
        return pos
    return pos + len(text) + 2 * glued  # each NUL stood for CR LF SPACE


def _fast_boxes(
    data: bytes, pos: int, out: list[Box], limits: Limits, try_run: bool
) -> tuple[int, Box | None, int]:
    """Parse the simple, complete boxes of ``data`` from ``pos`` on, appending them to ``out``.

    A box is done here when its whole header block is present: it is decoded and split in
    one go. At the first box that is incomplete or in any way unusual (a long line, a
    repeated key, a malformed line, bad UTF-8, a bad -Length...) this stops and the careful
    line-by-line parser takes over, which gives the precise error.

    ``try_run`` allows whole runs of boxes (:func:`_run_of_boxes`), window after window while
    they make progress; the caller allows it once per chunk, since a failed attempt costs a
    scan of its window.

    Returns ``(pos, box, need)``: where the careful path resumes, and a box whose body has not
    fully arrived with the number of body bytes it awaits (``None, -1`` otherwise).
    """
    max_line = limits.max_line_length
    max_headers = limits.max_headers
    end = len(data)
    append = out.append
    if try_run:
        while end - pos > 1024:
            done = _run_of_boxes(data, pos, out, limits)
            if done == pos:
                break
            pos = done
    max_body = limits.max_body_length
    find = data.find
    # A block found within ``window`` bytes (its blank line included) has lines of at most
    # ``window - 4`` bytes and ``window - 2`` header bytes: both limits hold without counting.
    window = (max_line if max_line < _BLOCK_WINDOW else _BLOCK_WINDOW) + 4
    if window > limits.max_header_bytes + 2:
        window = limits.max_header_bytes + 2
    short = window if window < _SHORT_BLOCK + 4 else _SHORT_BLOCK + 4
    while True:
        # Most header blocks end within their first few hundred bytes; the rest of the window
        # is searched only when they do not (a long line: a big value).
        stop = find(_END, pos, pos + short)
        if stop < 0 and short < window and end - pos > short:
            last = data.rfind(_LF, pos + short, pos + window)  # memrchr: none in a long value
            if last >= 0:
                stop = find(_END, pos + short - 3, last + 1)
        if stop <= pos:
            return pos, None, -1
        try:
            text = data[pos:stop].decode("utf-8")
        except UnicodeDecodeError:
            return pos, None, -1
        box = _box_from_block(text, max_headers)
        if box is None:
            return pos, None, -1
        length = box.pop("_length", None)
        if length is None:
            append(box)
            pos = stop + 4
            continue
        if not length.isascii() or not length.isdigit() or len(length) > 18:
            return pos, None, -1
        size = int(length)
        if size > max_body:
            return pos, None, -1
        pos = stop + 4
        if pos + size > end:
            return pos, box, size
        box.body = data[pos : pos + size]
        append(box)
        pos += size


class BoxParser:
    """Incremental Juice box parser: ``feed(bytes) -> list[Box]``.

    Args:
        limits: the limits to enforce; ``Limits()`` (the defaults) when ``None``.

    Only :class:`ProtocolError` subclasses escape ``feed``: :class:`MalformedBox`,
    :class:`TruncatedBox` and :class:`LimitExceeded`. After one is raised, every further call
    raises it again.
    """

    __slots__ = (
        "_body_length",
        "_box",
        "_buf",
        "_cont",
        "_ended",
        "_error",
        "_header_bytes",
        "_headers",
        "_key",
        "_need",
        "_scan",
        "limits",
    )

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = _DEFAULT_LIMITS if limits is None else limits
        # Unparsed bytes: a partial line, or a partial body.
        self._buf = bytearray()
        # Where to resume looking for CRLF in _buf (one before its end: a CR may be pending).
        self._scan = 0
        # The box being read (None between boxes), its last key (for continuation lines), its
        # header-line count, its -Length (-1: none) and, once the headers are done, the body
        # bytes still awaited (-1: reading header lines).
        self._box: Box | None = None
        self._key: str | None = None
        self._headers = 0
        self._header_bytes = 0
        # Continuation lines of the current key's value, joined when the value is complete.
        self._cont: list[str] = []
        self._body_length = -1
        self._need = -1
        self._error: ProtocolError | None = None
        self._ended = False

    @property
    def buffered(self) -> int:
        """How many received bytes are held waiting for the rest of a line or a body."""
        return len(self._buf)

    @property
    def in_box(self) -> bool:
        """Whether part of a box has been received (so the stream may not end here)."""
        return self._box is not None or bool(self._buf)

    def feed(self, data: bytes) -> list[Box]:
        """Parse ``data`` and return the boxes it completes, in order.

        ``feed(b"")`` marks the end of the stream.

        Raises:
            MalformedBox: the bytes are not well-formed Juice.
            LimitExceeded: a line, a body or the header count went past ``limits``.
            TruncatedBox: the stream ended in the middle of a box.
            ProtocolError: data arrived after the end of the stream, or an earlier error.
        """
        if self._error is not None:
            raise self._error
        if not data:
            if self._ended:
                return []
            self._ended = True
            if self._box is not None or self._buf:
                self._fail(TruncatedBox(self._truncation()))
            return []
        if self._ended:
            self._fail(ProtocolError("data received after the end of the stream"))
        if type(data) is not bytes:
            data = bytes(data)  # bytearray, memoryview; a TypeError for str: not bytes
        try:
            buf = self._buf
            if buf:
                buf += data
                if self._need >= 0:
                    if len(buf) < self._need:
                        return []
                elif _find_crlf(buf, self._scan) < 0:
                    self._scan = len(buf) - 1
                    self._check_partial_line(len(buf), buf[-1])
                    return []
                data = bytes(buf)
                buf.clear()
            elif self._box is None and self._need < 0:
                # Between boxes with nothing held back: most reads are whole boxes, which the
                # fast path finishes on its own. The commonest of all, one small box without a
                # body (a sequential request or answer), is one decode and one split: no line
                # can be too long when the whole block is within max_line_length (nor all of
                # them, within max_header_bytes; _box_from_block counts them).
                if (
                    len(data) <= _SHORT_BLOCK
                    and data[-4:] == _END
                    and len(data) - 4 <= self.limits.max_line_length
                    and len(data) - 2 <= self.limits.max_header_bytes
                ):
                    try:
                        text = data[:-4].decode("utf-8")
                    except UnicodeDecodeError:
                        text = None
                    if text is not None:
                        box = _box_from_block(text, self.limits.max_headers)
                        if box is not None and "_length" not in box:
                            return [box]
                out: list[Box] = []
                pos, box, need = _fast_boxes(data, 0, out, self.limits, True)
                if box is None and pos == len(data):
                    return out
                self._box = box
                self._body_length = self._need = need
                return self._parse(data, pos, out, False, fast_tried=box is None)
            return self._parse(data, 0, [], True)
        except ProtocolError as exc:
            self._fail(exc)
        except UnicodeDecodeError as exc:
            self._fail(MalformedBox(f"header value is not valid UTF-8: {exc}"))
        except Exception as exc:  # pragma: no cover - defensive: only ProtocolError escapes
            self._fail(MalformedBox(f"unparseable input: {exc!r}"))

    def _fail(self, error: ProtocolError) -> NoReturn:
        self._error = error
        self._buf = bytearray()
        self._box = None
        self._key = None
        self._cont = []
        raise error

    def _truncation(self) -> str:
        if self._need >= 0:
            return (
                f"the stream ended in a body: {len(self._buf)} of "
                f"{self._body_length} bytes received"
            )
        if self._buf:
            return f"the stream ended in a header line ({len(self._buf)} bytes, no CRLF)"
        return "the stream ended before the blank line that ends a box"

    def _check_partial_line(self, size: int, last: int) -> None:
        over = size - self.limits.max_line_length
        # One byte over is still fine if it is the CR of the CRLF that ends the line.
        if over > 1 or (over == 1 and last != _CR):
            raise LimitExceeded(
                f"a header line is longer than max_line_length "
                f"({self.limits.max_line_length} bytes)"
            )

    def _parse(
        self, data: bytes, pos: int, out: list[Box], try_run: bool, fast_tried: bool = False
    ) -> list[Box]:
        """Parse ``data`` from ``pos`` on, appending to ``out``, and keep what is left over.

        ``try_run`` allows the whole-run fast path (see :func:`_fast_boxes`); ``fast_tried``
        says the fast path has just stopped at ``pos`` (no use asking it again there).
        """
        limits = self.limits
        max_line = limits.max_line_length
        max_headers = limits.max_headers
        max_header_bytes = limits.max_header_bytes
        max_body = limits.max_body_length
        keys = _KEYS
        find = data.find
        box = self._box
        key = self._key
        cont = self._cont
        headers = self._headers
        header_bytes = self._header_bytes
        length = self._body_length
        need = self._need
        end = len(data)
        while True:
            if box is None and need < 0:
                if fast_tried:
                    fast_tried = False
                else:
                    pos, box, need = _fast_boxes(data, pos, out, limits, try_run)
                    try_run = False
                    if box is not None:
                        length = need
            if need >= 0:
                stop = pos + need
                if stop > end:
                    break
                assert box is not None
                box.body = data[pos:stop]
                out.append(box)
                pos = stop
                box = key = None
                headers = header_bytes = 0
                length = need = -1
                continue
            # _find_crlf, inlined: this runs for every line of the careful path.
            lf = find(_LF, pos + 1)
            while lf > 0 and data[lf - 1] != _CR:
                lf = find(_LF, lf + 1)
            if lf < 0:
                break
            eol = lf - 1
            if eol - pos > max_line:
                raise LimitExceeded(
                    f"a header line is longer than max_line_length ({max_line} bytes)"
                )
            if eol == pos:
                # The blank line: the headers are done.
                pos += 2
                if box is None:
                    box = _new_box(Box)
                if cont:
                    box[key] += "".join(cont)  # type: ignore[index]
                    cont.clear()
                if length >= 0:
                    need = length
                    continue
                out.append(box)
                box = key = None
                headers = header_bytes = 0
                continue
            if box is None:
                box = _new_box(Box)
            headers += 1
            if headers > max_headers:
                raise LimitExceeded(f"a box has more than max_headers ({max_headers}) lines")
            header_bytes += eol - pos + 2
            if header_bytes > max_header_bytes:
                raise LimitExceeded(
                    f"a box's header lines add up to more than max_header_bytes "
                    f"({max_header_bytes} bytes)"
                )
            if data[pos] == _SPACE:
                if key is None:
                    raise MalformedBox(
                        f"continuation line with no header before it: {data[pos:eol][:80]!r}"
                    )
                if key == "_length":
                    raise MalformedBox("continuation line after -Length")
                # Joined once the value is complete: adding each line to the value as it
                # comes would copy the value again for every line (quadratic).
                cont.append("\r\n")
                cont.append(data[pos + 1 : eol].decode("utf-8"))
            else:
                if cont:
                    box[key] += "".join(cont)  # type: ignore[index]
                    cont.clear()
                sep = find(_SEP, pos, eol)
                if sep < 0:
                    raise MalformedBox(f"header line without ': ': {data[pos:eol][:80]!r}")
                raw = data[pos:sep]
                key = keys.get(raw)
                if key is None:
                    key = _decode_key(raw)
                value = data[sep + 2 : eol].decode("utf-8")
                if key == "_length":
                    length = _parse_length(value, max_body)
                else:
                    box[key] = value
            pos = eol + 2
        self._box = box
        self._key = key
        self._headers = headers
        self._header_bytes = header_bytes
        self._body_length = length
        self._need = need
        if pos < end:
            self._buf += memoryview(data)[pos:]
            if need < 0:
                rest = end - pos
                self._scan = rest - 1
                self._check_partial_line(rest, data[-1])
        else:
            self._scan = 0
        return out
