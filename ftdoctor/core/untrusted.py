"""Text that ftdoctor quotes but did not write (label names, rows, exception messages, a team's check text, file
names) made inert for every output: terminals, CI logs, XML and HTML. Pure functions over strings.

- Control characters (C0 but tab and newline, DEL, C1), bidi controls, line and paragraph separators, lone
  surrogates and the XML non-characters U+FFFE/U+FFFF are shown as escapes (``\\x1b``, ``\\u202e``): nothing
  reaches a terminal that it would obey, and what remains is valid XML 1.0.
- GitHub Actions reads a line as a workflow command when, after leading whitespace, it starts with ``::``, and
  reads the legacy ``##[command]`` anywhere in a line: a line of quoted text never starts with ``::`` (its first
  colon becomes ``\\x3a``) and ``##[`` becomes ``##\\x5b``. `inline` also shows newlines as ``\\n``, so quoted
  text never starts an output line at all.
- Long text is cut, with a marker saying how much was left out.

The JSON report keeps the data as it is (it is data; parsers handle it): these functions are for rendering.
"""

from __future__ import annotations

import re
from typing import Any

# How much of a quoted value a report shows (characters of the original text).
NAME = 300  # a label, a column or a file name
TITLE = 300
DETAIL = 4000  # a finding's detail or fix, a message
BLOCK = 20_000  # a traceback
TAIL_CHARS = 4000  # the last lines a script printed, in an exit-2 message
TAIL_LINES = 15

_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def _escape(cp: int) -> str:
    return _NAMED.get(cp) or (f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}")


def _unsafe() -> list[int]:
    points = [c for c in range(0x20) if c not in (0x09, 0x0A)]
    points += list(range(0x7F, 0xA0))  # DEL and C1 (NEL, CSI, OSC ...)
    points += [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]  # bidi controls
    points += [0x2028, 0x2029]  # line and paragraph separators: new lines to some readers
    points += list(range(0xD800, 0xE000))  # lone surrogates (JSON may carry them; UTF-8 cannot encode them)
    points += [0xFFFE, 0xFFFF]  # not characters in XML 1.0
    return points


_VISIBLE = {cp: _escape(cp) for cp in _unsafe()}
_INLINE = {**_VISIBLE, 0x0A: "\\n"}
_LEADING_COLONS = re.compile(r"^(\s*):(?=:)", re.M)
# An ANSI escape sequence that a renderer (rich) wrote around the text, not a character of it.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def cut(text: Any, limit: int | None) -> str:
    """``text`` as a string of at most ``limit`` characters of the original, then a marker of how much was left
    out."""
    text = text if isinstance(text, str) else str(text)
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]} … [{len(text) - limit} more characters]"


def visible(text: Any, limit: int | None = DETAIL) -> str:
    """``text`` with control characters, bidi controls and the like shown as escapes; newlines and tabs kept,
    but no line of it can be read as a workflow command."""
    out = cut(text, limit).translate(_VISIBLE)
    return _defuse(out)


def inline(text: Any, limit: int | None = DETAIL) -> str:
    """``text`` on one line: as `visible`, with newlines shown as ``\\n``."""
    return _defuse(cut(text, limit).translate(_INLINE))


def _defuse(text: str) -> str:
    if "##[" in text:
        text = text.replace("##[", "##\\x5b")
    if "::" in text:
        text = _LEADING_COLONS.sub(r"\1\\x3a", text)
    return text


def block(text: Any, limit: int | None = BLOCK) -> str:
    """Several lines of quoted text (a traceback, an error message): `visible`, cut to ``limit`` characters."""
    return visible(text, limit)


def tail(text: Any, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    """The last ``lines`` lines of a script's output within ``chars`` characters, each `visible`: an earlier part
    left out is said so on the first line."""
    text = text if isinstance(text, str) else str(text)
    kept = text.rstrip("\n").splitlines()[-lines:]
    shown = "\n".join(kept)
    left = len(text.rstrip("\n")) - len(shown)
    if len(shown) > chars:
        left += len(shown) - chars
        shown = shown[-chars:]
    out = visible(shown, None)
    return (f"[… {left} earlier characters left out]\n" if left > 0 else "") + out


def defuse_lines(rendered: str) -> str:
    """A rendered report (rich output, possibly with its colour codes) with no line that a CI runner would read
    as a workflow command. Wrapping can start a line in the middle of quoted text, so this runs on the output."""
    if "::" not in rendered and "##[" not in rendered:
        return rendered
    out = []
    for line in rendered.split("\n"):
        plain = _ANSI.sub("", line) if "\x1b" in line else line
        if plain.lstrip().startswith("::"):
            line = _first_colon_escaped(line)
        out.append(line.replace("##[", "##\\x5b"))
    return "\n".join(out)


def _first_colon_escaped(line: str) -> str:
    """``line`` with the first colon of its text (not of an escape sequence around it, a link's URL) escaped."""
    pos = 0
    for m in _ANSI.finditer(line):
        at = line.find(":", pos, m.start())
        if at >= 0:
            break
        pos = m.end()
    else:
        at = line.find(":", pos)
    return line[:at] + "\\x3a" + line[at + 1 :] if at >= 0 else line


def deep(value: Any, fn=visible) -> Any:
    """``value`` (dicts, lists, strings) with ``fn`` applied to every string, keys included."""
    if isinstance(value, str):
        return fn(value, None)
    if isinstance(value, dict):
        return {deep(k, fn): deep(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [deep(v, fn) for v in value]
    return value


def json_text(text: str) -> str:
    """A JSON document as text that a CI log shows without running a legacy ``##[command]`` in it; the same
    document to a parser (``\\u005b`` is ``[``; JSON's own syntax never holds ``#``)."""
    return text.replace("##[", "##\\u005b")
