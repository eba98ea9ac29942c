"""``[home_assistant]`` settings: TLS, the password file and their errors.

Each refusal names the key and the problem, in the agent's config error format, and is
paired with the accepted variant so that the refusal is shown to come from the rule
under test. Files are real (modes and owners are the kernel's).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from device.config import HomeAssistantSettings, load_config, parse_config
from device.errors import ConfigError
from device.homeassistant_bridge import HomeAssistantBridge, tls_context
from tests.fixtures.home_assistant import HomePki, write_private

KEYS = '[keys]\nowner_recipient = "age1owner"\nescrow_recipient = "age1escrow"\n'


def ha(tmp_path: Path, body: str) -> HomeAssistantSettings:
    path = tmp_path / "agent.toml"
    path.write_text(KEYS + "[home_assistant]\nenabled = true\n" + body, encoding="utf-8")
    return load_config(path).home_assistant


def test_tls_is_off_by_default_and_the_port_follows_it(tmp_path: Path) -> None:
    assert (ha(tmp_path, "").tls, ha(tmp_path, "").port) == (False, 1883)
    assert ha(tmp_path, "tls = true\n").port == 8883
    assert ha(tmp_path, "tls = true\nport = 1883\n").port == 1883  # explicit wins
    assert ha(tmp_path, "port = 8883\n").tls is False


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620])
def test_a_password_file_others_may_read_is_refused_at_load(tmp_path: Path, mode: int) -> None:
    secret = write_private(tmp_path / "ha-password", b"s3cret\n", mode)
    with pytest.raises(ConfigError) as refused:
        ha(tmp_path, f'username = "doorbell"\npassword_file = "{secret}"\n')
    message = str(refused.value)
    assert "agent.toml" in message
    assert "home_assistant.password_file" in message
    assert str(secret) in message
    assert f"{mode:04o}" in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_password_file_is_read_without_its_line_break(
    tmp_path: Path, mode: int
) -> None:
    secret = write_private(tmp_path / "ha-password", b"s3 cret\n", mode)
    settings = ha(tmp_path, f'username = "doorbell"\npassword_file = "{secret}"\n')
    assert settings.broker_password() == "s3 cret"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_a_password_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    secret = write_private(tmp_path / "ha-password", b"s3cret\n")
    body = f'username = "doorbell"\npassword_file = "{secret}"\n'
    assert ha(tmp_path, body).broker_password() == "s3cret"  # root's own file: accepted
    os.chown(secret, 65534, 65534)
    with pytest.raises(ConfigError, match=r"home_assistant\.password_file.*owned by uid 65534"):
        ha(tmp_path, body)


def test_a_missing_or_empty_password_file_is_named(tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    with pytest.raises(ConfigError, match=rf"home_assistant\.password_file.*{absent}"):
        ha(tmp_path, f'username = "doorbell"\npassword_file = "{absent}"\n')
    empty = write_private(tmp_path / "empty", b"\n")
    settings = ha(tmp_path, f'username = "doorbell"\npassword_file = "{empty}"\n')
    with pytest.raises(ConfigError, match=rf"home_assistant\.password_file: {empty} is empty"):
        settings.broker_password()


def test_password_and_password_file_together_are_refused(tmp_path: Path) -> None:
    secret = write_private(tmp_path / "ha-password", b"s3cret\n")
    with pytest.raises(ConfigError, match=r"'home_assistant'.*password and password_file"):
        ha(tmp_path, f'username = "u"\npassword = "x"\npassword_file = "{secret}"\n')
    assert ha(tmp_path, f'username = "u"\npassword_file = "{secret}"\n').password is None
    assert ha(tmp_path, 'username = "u"\npassword = "x"\n').broker_password() == "x"


def test_a_password_without_a_username_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="without username"):
        ha(tmp_path, 'password = "x"\n')


def test_tls_files_without_tls_are_refused(tmp_path: Path) -> None:
    pki = HomePki(tmp_path / "pki", ("localhost",))
    with pytest.raises(ConfigError, match=r"ca_file set but tls is false"):
        ha(tmp_path, f'ca_file = "{pki.ca}"\n')
    assert ha(tmp_path, f'tls = true\nca_file = "{pki.ca}"\n').ca_file == pki.ca


def test_client_cert_and_key_go_together_and_the_key_must_be_private(tmp_path: Path) -> None:
    pki = HomePki(tmp_path / "pki", ("localhost",))
    client = pki.client("doorbell")
    with pytest.raises(ConfigError, match="client_cert and client_key go together"):
        ha(tmp_path, f'tls = true\nclient_cert = "{client.cert}"\n')
    both = f'tls = true\nclient_cert = "{client.cert}"\nclient_key = "{client.key}"\n'
    assert ha(tmp_path, both).client_key == client.key
    client.key.chmod(0o644)
    with pytest.raises(ConfigError, match=rf"client_key.*{client.key} is mode 0644"):
        ha(tmp_path, both)


def test_an_unreadable_ca_file_is_named(tmp_path: Path) -> None:
    absent = tmp_path / "ca.pem"
    with pytest.raises(ConfigError, match=rf"home_assistant\.ca_file.*{absent}: cannot read"):
        ha(tmp_path, f'tls = true\nca_file = "{absent}"\n')


def test_a_disabled_bridge_reads_no_file(tmp_path: Path) -> None:
    """Files are checked only when the bridge will use them; the key rules still hold."""
    absent = tmp_path / "absent"
    text = KEYS + f'[home_assistant]\nusername = "u"\npassword_file = "{absent}"\n'
    assert parse_config(text, Path("agent.toml")).home_assistant.password_file == absent


def test_the_tls_context_verifies_names_and_chains_from_tls_1_2(tmp_path: Path) -> None:
    pki = HomePki(tmp_path / "pki", ("localhost",))
    context = tls_context(HomeAssistantSettings(enabled=True, tls=True, ca_file=pki.ca))
    assert context.check_hostname is True
    assert context.verify_mode.name == "CERT_REQUIRED"
    assert context.minimum_version.name == "TLSv1_2"
    assert len(context.get_ca_certs()) == 1  # only the named CA, not the system store
    system = tls_context(HomeAssistantSettings(enabled=True, tls=True))
    assert system.check_hostname is True


def test_an_inline_password_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = write_private(tmp_path / "ha-password", b"s3cret\n")
    with caplog.at_level(logging.WARNING, logger="device.homeassistant"):
        HomeAssistantBridge(
            HomeAssistantSettings(enabled=True, username="u", password_file=secret),
            device_id="porch",
        )
        assert not caplog.records  # the control: a password file draws no warning
        HomeAssistantBridge(
            HomeAssistantSettings(enabled=True, username="u", password="x"), device_id="porch"
        )
    [record] = caplog.records
    assert "in clear in agent.toml" in record.getMessage()
    assert "password_file" in record.getMessage()


def test_the_port_follows_tls_also_when_built_in_code() -> None:
    assert HomeAssistantSettings(tls=True).port == 8883
    assert HomeAssistantSettings(tls=True, port=1883).port == 1883
    assert HomeAssistantSettings().port == 1883
