"""The owner's notice ledger on real files, and the notice judgement, without a broker.

Proved: a notice is stored once per jti and read back through the protocol's parser; a
crash in the middle of an append (a last line without its newline) is cut off on the
next open and the ledger goes on; any other damage is an error naming file and line,
never silently dropped; a second reader is refused while the first holds the lock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from owner_app.errors import HostileInput, StateError
from owner_app.ledger import LEDGER_NAME, Added, open_ledger
from owner_app.reader import judge
from protocol.messages import parse_notice
from tests.fixtures.owner import notice

NOW = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
TOPIC = "p/v1/dev/notice"


def test_stored_once_per_jti_and_read_back(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as ledger:
        assert not ledger.existed
        assert ledger.add(parse_notice(notice("a")), NOW) is Added.new
        assert ledger.add(parse_notice(notice("a")), NOW) is Added.duplicate
        assert ledger.add(parse_notice(notice("a", docket="OTHER")), NOW) is Added.conflict
        assert ledger.add(parse_notice(notice("b")), NOW) is Added.new
    assert (tmp_path / LEDGER_NAME).stat().st_mode & 0o777 == 0o600
    with open_ledger(tmp_path) as again:
        assert again.existed
        assert [e.notice.jti for e in again.entries()] == ["a", "b"]
        assert again.entries()[0].notice == parse_notice(notice("a"))
        assert again.entries()[0].received_at == NOW


def test_a_torn_last_line_is_cut_off_and_the_ledger_goes_on(tmp_path: Path) -> None:
    """A crash mid-append: that notice was never acknowledged, the broker sends it again."""
    with open_ledger(tmp_path) as ledger:
        ledger.add(parse_notice(notice("a")), NOW)
    path = tmp_path / LEDGER_NAME
    whole = path.read_bytes()
    path.write_bytes(whole + whole[:40])  # half of a second line
    with open_ledger(tmp_path) as ledger:
        assert [e.notice.jti for e in ledger.entries()] == ["a"]
        assert ledger.add(parse_notice(notice("b")), NOW) is Added.new
    with open_ledger(tmp_path) as ledger:
        assert [e.notice.jti for e in ledger.entries()] == ["a", "b"]


@pytest.mark.parametrize(("damage", "problem"), [
    (b'{"v":1}\n', "unreadable ledger entry"),
    (b"not json\n", "unreadable ledger entry"),
    (None, "is stored twice"),
])
def test_damage_inside_the_ledger_is_named_by_file_and_line(
    tmp_path: Path, damage: bytes | None, problem: str
) -> None:
    with open_ledger(tmp_path) as ledger:
        ledger.add(parse_notice(notice("a")), NOW)
    path = tmp_path / LEDGER_NAME
    first = path.read_bytes()
    path.write_bytes(first + (damage if damage is not None else first))
    with pytest.raises(StateError, match=f"{LEDGER_NAME}:2: .*{problem}"), \
            open_ledger(tmp_path):
        pass
    assert path.read_bytes().startswith(first)  # nothing rewritten


def test_a_second_reader_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    with (open_ledger(tmp_path), pytest.raises(StateError, match="another doorbell-owner"),
          open_ledger(tmp_path)):
        pass
    with open_ledger(tmp_path):  # control: free again once the first is done
        pass


def test_judge_takes_only_notices_on_the_notice_topic() -> None:
    assert judge(TOPIC, notice("a"), expected_topic=TOPIC).jti == "a"
    with pytest.raises(HostileInput, match="not on the notice topic"):
        judge("p/v1/dev/status", notice("a"), expected_topic=TOPIC)
    with pytest.raises(HostileInput, match="notice must be a JSON object"):
        judge(TOPIC, b"[]", expected_topic=TOPIC)
