"""Text from outside (vendor answers, event fields, phones' headers) made safe for a terminal.

rps.log, the admin commands and the web console show text that someone else wrote: a vendor's
error message, a device name from the PBX GUI, a user name a phone (or an attacker) sent. A
control character in it could move the cursor, clear the screen or retitle the terminal of
whoever tails the log (ESC sequences), and a bidi control (U+202E) can make a line read
differently from what it holds. Such characters are written escaped instead: ``\\x1b``,
``\\u202e``; everything else is left as it is (no other character is escaped, backslashes
included, so ordinary text reads unchanged).

The set: C0 controls (U+0000 to U+001F), DEL and the C1 controls (U+007F to U+009F), the Unicode
bidi controls (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069), the line and paragraph
separators (U+2028, U+2029) and lone surrogates (undecodable bytes of a header, which could not
even be written to a UTF-8 file). The same set is kept in ``rps_service/ui/dom.js``.
"""

from __future__ import annotations

import re

#: Every character :func:`escape_controls` escapes.
CONTROLS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)
#: The same without tab, line feed and carriage return (for JSON, which escapes those).
CONTROLS_NOT_BREAKS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069\ud800-\udfff]"
)
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_LINE_SPACE = re.compile(r"[ \t\r\n]+")


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _SHORT:
        return _SHORT[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, *, keep_breaks: bool = False) -> str:
    """``text`` with every control, bidi control and lone surrogate escaped (``\\x1b``,
    ``\\u202e``; tab, line feed and carriage return as ``\\t``, ``\\n``, ``\\r``, or
    kept with ``keep_breaks``)."""
    if text.isprintable():  # the common case: nothing to escape, no regex
        return text
    pattern = CONTROLS_NOT_BREAKS if keep_breaks else CONTROLS
    return pattern.sub(lambda match: _escaped(match.group()), text)


def one_line(text: str) -> str:
    """``text`` on one line for a log line or a table cell: runs of spaces, tabs and line
    breaks become one space, the ends are trimmed, other controls are escaped."""
    if text.isprintable() and text.strip(" ") == text and "  " not in text:
        return text
    return escape_controls(_LINE_SPACE.sub(" ", text).strip(" "))


def control_in(text: str) -> str | None:
    """The first character of ``text`` that :func:`escape_controls` would escape, or None."""
    if text.isprintable():
        return None
    match = CONTROLS.search(text)
    return match.group() if match else None


def describe_char(char: str) -> str:
    """``U+001B`` for a message naming a refused character."""
    return f"U+{ord(char):04X}"
