"""Repairing doubly UTF-8 encoded text ("âœ…" for "✅") without touching text that is fine."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.tracker.mojibake import normalise, repair
from tracker_support import TRACKERS


def misdecode(data: bytes) -> str:
    """What a cp1252 reader makes of UTF-8 bytes (undefined bytes pass through as C1 controls)."""
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in data)


def test_seed_emoji_are_repaired():
    text = repair((TRACKERS / "seed.md").read_text(encoding="utf-8"))
    assert {ch for ch in text if ord(ch) > 0x7F} == {"✅", "🔄", "🔥", "📈", "🚀", "🎉"}
    assert text.count("✅") == 30
    assert "### **Step 1: Core Infrastructure Stabilization** ✅ **COMPLETED**" in text


def test_known_pairs():
    for good in ("✅", "🔄", "é", "Zürich", "日本語", "—", "“quoted”", "€"):
        bad = misdecode(good.encode("utf-8"))
        assert bad != good
        assert repair(bad) == good
        assert repair(misdecode(bad.encode("utf-8"))) == good  # encoded three times


def test_correct_text_is_untouched():
    for good in ("Café naïve ✅ 日本語", "© 2011", "Ünïcödé", "plain ASCII", "1 € per – item", ""):
        assert repair(good) == good


def test_normalise_line_endings_and_bom():
    assert normalise("\ufeffa\r\nb\rc\n") == "a\nb\nc\n"


# Letters real trackers use, but none of the characters a cp1252 mis-decoding produces
# (Latin-1 0x80-0xBF and cp1252's extra punctuation): such text must survive a round trip.
_SAFE = st.characters(whitelist_categories=("Lu", "Ll", "Lo", "Nd", "So", "Zs"),
                      blacklist_characters="".join(chr(c) for c in range(0x80, 0x100))
                      + "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ")


@settings(max_examples=300, deadline=None)
@given(st.text(_SAFE, max_size=60))
def test_repair_undoes_any_double_encoding(text):
    assert repair(misdecode(text.encode("utf-8"))) == text
    assert repair(text) == text
