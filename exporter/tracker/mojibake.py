"""Repair text that was UTF-8 encoded twice ("âœ…" for "✅"), and normalise line endings."""

from __future__ import annotations


def _byte(ch: str) -> int | None:
    """The single byte a mis-decoder turned into `ch` (cp1252 first, latin-1 for its holes)."""
    try:
        return ch.encode("cp1252")[0]
    except UnicodeEncodeError:
        code = ord(ch)
        # cp1252 leaves 0x81, 0x8D, 0x8F, 0x90, 0x9D undefined; decoders pass them through as C1 controls.
        return code if 0x80 <= code <= 0x9F else None


def _repair_once(text: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        lead = _byte(text[i]) if ord(text[i]) > 0x7F else None
        if lead is not None and 0xC2 <= lead <= 0xF4:
            size = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
            chunk = text[i:i + size]
            raw = [_byte(c) for c in chunk]
            # Only a complete, valid UTF-8 sequence is evidence of mojibake; anything else is real text.
            if len(chunk) == size and all(b is not None and 0x80 <= b <= 0xBF for b in raw[1:]):
                try:
                    out.append(bytes([lead, *raw[1:]]).decode("utf-8"))  # type: ignore[list-item]
                    i += size
                    continue
                except UnicodeDecodeError:
                    pass
        out.append(text[i])
        i += 1
    return "".join(out)


def repair(text: str) -> str:
    """Undo double (or triple) UTF-8 encoding; leave correctly encoded text untouched."""
    for _ in range(3):
        fixed = _repair_once(text)
        if fixed == text:
            break
        text = fixed
    return text


def normalise(text: str) -> str:
    """Strip a BOM, turn CRLF and CR into LF, and repair mojibake."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return repair(text.replace("\r\n", "\n").replace("\r", "\n"))
