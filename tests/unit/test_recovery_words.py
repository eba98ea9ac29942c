"""Recovery logs say what happened in words, not a Python repr."""

from __future__ import annotations

from device.vault.recovery import RecoveryReport


def test_a_recovery_report_reads_as_words() -> None:
    report = RecoveryReport(truncated=("20260504T093000Z-ab12cd34",), dropped_rows=("a", "b"))
    text = str(report)
    assert "RecoveryReport(" not in text
    assert "()" not in text
    assert text == (
        "1 clip kept as truncated (power cut mid-clip): 20260504T093000Z-ab12cd34; "
        "2 clips dropped from the index (the file was gone): a, b"
    )
    assert str(RecoveryReport()) == "nothing to do"
