"""docs/agent-config.md is the configuration model, rendered: every key with its type,
default and meaning; regenerate it with `python -m device.config_reference`."""

from __future__ import annotations

from pathlib import Path

from device.config import AgentConfig, CameraSettings
from device.config_reference import MEANINGS, SECTIONS, keys, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "agent-config.md"


def test_the_document_matches_the_model() -> None:
    assert DOC.read_text() == render(), (
        "docs/agent-config.md is stale: python -m device.config_reference > "
        "docs/agent-config.md"
    )


def test_every_key_has_a_meaning_and_every_meaning_a_key() -> None:
    model = {f"{section}.{key}" for section, key, _ in keys()}
    assert set(MEANINGS) == model
    assert set(SECTIONS) == set(AgentConfig.model_fields)


def test_the_document_says_what_a_newcomer_runs_by_default() -> None:
    text = DOC.read_text()
    assert CameraSettings().source == "sim"
    assert '| `source` | one of `"sim"`' in text
    assert '| `"sim"` |' in text
    assert "`doorbell-agent run` plays its `scene`" in text
    assert "every 45 s" in text
    assert "--install-dir" in text
    for required in ("owner_recipient", "escrow_recipient"):
        assert f"| `{required}` | string | required |" in text
