"""The device-storage scan finds MP4 boxes and age keys, not four letters in base64 text.

The soak found "mdat" inside a release database's write-ahead log on a device that held
no plaintext: base64 text (a token's sealed `keys`) spells it now and then. A box is its
type after its 32-bit size; text before the letters reads as a size of 512 MiB or more.
"""

from __future__ import annotations

import base64
from pathlib import Path

from demo.checks import has_mp4_box, scan_for_plaintext
from tests.fixtures.release import h264_mp4


def test_a_real_fragmented_mp4_is_found(tmp_path: Path) -> None:
    (tmp_path / "clip.bin").write_bytes(b"\x07" * 100 + h264_mp4(1.0) + b"\x00" * 50)
    hits = scan_for_plaintext(tmp_path).hits
    assert {h.rsplit(": ", 1)[1] for h in hits} == {"ftyp", "moof", "mdat"}


def test_the_letters_inside_base64_text_are_not_a_box(tmp_path: Path) -> None:
    text = b'{"keys": "' + base64.b64encode(b"\xfb" * 30) + b'mdatmoofftyp' + b'QUJD"}'
    (tmp_path / "release.sqlite3-wal").write_bytes(b"\x00\x01" * 40 + text)
    assert scan_for_plaintext(tmp_path).hits == ()


def test_a_box_header_is_found_however_it_is_surrounded() -> None:
    assert has_mp4_box(b"xx" + (24).to_bytes(4, "big") + b"moof" + b"\x00" * 16, b"moof")
    assert has_mp4_box(b"mdat at the very start", b"mdat")
    assert has_mp4_box(b"abc" + (0).to_bytes(4, "big") + b"mdat", b"mdat")  # to the end
    assert not has_mp4_box(b"A+/9mdat", b"mdat")


def test_an_age_secret_key_is_found_anywhere(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_bytes(b"text AGE-SECRET-KEY-1QQQ text")
    assert [h.rsplit(": ", 1)[1] for h in scan_for_plaintext(tmp_path).hits] == [
        "AGE-SECRET-KEY-"
    ]
