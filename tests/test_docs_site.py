"""The documentation site (mkdocs.yml over docs/) builds strictly, and strict means strict.

This is ``make test``'s docs build (``make docs`` runs the same for people);
``make test`` installs the ``docs`` extra (MkDocs, Material, mkdocstrings)
before pytest. The second test is the guard
on the guard: a broken link must fail the build (``--quiet`` once hid every
warning from ``--strict`` and let a broken anchor through).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system  # builds the documentation site in a subprocess

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = build(ROOT, site)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "WARNING" not in result.stderr, result.stderr[-4000:]
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "jwtsess" in home
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("Issuer", "Verifier", "TokenSettings", "JWTSessAuth", "device_label"):
        assert name in api, f"{name} is missing from the API reference"


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", copy)
    shutil.copy(ROOT / "CHANGELOG.md", copy)
    shutil.copytree(ROOT / "docs", copy / "docs")
    os.symlink(ROOT / "jwtsess", copy / "jwtsess")
    (copy / "docs" / "api.md").write_text("# Python API\n", encoding="utf-8")  # quicker
    with (copy / "docs" / "index.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [the outages section](operations.md#no-such-section).\n")
    result = build(copy, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-section" in result.stderr
