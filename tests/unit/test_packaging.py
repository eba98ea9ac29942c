"""`make setup` quietly: the licence is an SPDX string (a TOML table makes setuptools
print a page of deprecation warnings at every install), with a setuptools that reads it;
the agency's tool is installed with the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())


def test_the_licence_is_an_spdx_string() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]


def test_the_agency_tool_is_a_console_script() -> None:
    assert PYPROJECT["project"]["scripts"]["doorbell-evidence"] == "doorbell_evidence.cli:main"


def test_no_design_page_outside_the_repository_is_cited() -> None:
    root = Path(__file__).resolve().parents[2]
    cited = []
    for folder in ("protocol", "device", "cloud_stub", "owner_app", "doorbell_evidence",
                   "docs", "deploy", "demo", "tests", "bench"):
        for path in (root / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".template", ".service", ".sh", ".toml"):
                text = path.read_text(errors="replace")
                if "DESIGN" + " section" in text or "DESIGN" + ".md" in text:
                    cited.append(str(path.relative_to(root)))
    readme = (root / "README.md").read_text()
    assert "DESIGN" + ".md" not in readme
    assert cited == []


def test_the_cloud_units_documentation_is_not_the_pi_guide() -> None:
    unit = (Path(__file__).resolve().parents[2] / "deploy" / "systemd" /
            "cloud-stub.service").read_text()
    assert "raspberry-pi.md" not in unit
    assert "README.md" in unit
