"""`owner_app.render.safe`: what reaches the owner's terminal.

The protocol already refuses notices with control or bidirectional characters; the
renderer masks them again, for a ledger written by an older version or edited by hand.
"""

from owner_app.render import safe


def test_control_and_format_characters_are_masked_and_letters_kept() -> None:
    assert safe("A\x1b[2J\x9b2J\u202eB\u2066C é 日本") == "A?[2J?2J?B?C é 日本"


def test_long_text_is_cut_and_marked() -> None:
    assert safe("x" * 10, 4) == "xxxx..."
    assert safe("x" * 4, 4) == "xxxx"  # the control: no mark when nothing was cut
