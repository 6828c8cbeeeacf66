"""The package as a user gets it: built, installed into a fresh venv, imported, type-checked.

``python -m build`` makes the sdist from the files pyproject.toml lists (never
``keys/``, nothing git ignores) and the wheel from that unpacked sdist, as a
clean clone would.
Each install goes into a fresh venv made without pip (the outer pip installs
into it with ``--python``), and the outer mypy checks a user's file with
``--python-executable`` pointing at that venv, so it sees exactly what the venv
sees. Installed twice: from the wheel, and editable (``pip install -e``) from
the unpacked sdist, the way a contributor works. An editable install must be
visible to mypy: setuptools' import-hook editable install was not
("Cannot find implementation or library stub for module named jwtsess"); the
hatchling backend writes a plain path entry instead.

Needs the package index for the build backend and the runtime dependencies
(pip's cache makes repeat runs quick). Bounded: every subprocess has a timeout.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.system  # builds and installs the package into fresh venvs

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds, for each step (a cold pip cache downloads cryptography)

USER_CODE = textwrap.dedent(
    """
    from jwtsess import Issuer, KeyRing, MemoryStore, TokenSettings, Verifier
    from jwtsess.web import JWTUser


    def role_of(user: JWTUser) -> str:
        return user.role


    def make(keyring: KeyRing) -> tuple[Issuer, Verifier]:
        settings = TokenSettings(issuer="https://auth.example.com", audience="api")
        return Issuer(keyring, settings, MemoryStore()), Verifier(keyring, settings)
    """
)
# A type error mypy must catch: proves the types are real, not Any.
WRONG_CODE = textwrap.dedent(
    """
    from jwtsess.web import JWTUser


    def count(user: JWTUser) -> int:
        return user.role
    """
)


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def fresh_venv(path: Path) -> Path:
    venv.create(path, with_pip=False)
    return path / "bin" / "python"


def pip_install(python: Path, *args: str | Path, cwd: Path) -> None:
    ok(run(sys.executable, "-m", "pip", "--python", python, "install", "-q", *args, cwd=cwd))


def check_as_a_user(python: Path, workdir: Path) -> None:
    """Outside the source tree: import, then mypy --strict on a user's file (and a wrong one)."""
    workdir.mkdir()
    ok(run(python, "-c", "import jwtsess, jwtsess.web", cwd=workdir))
    (workdir / "use.py").write_text(USER_CODE, encoding="utf-8")
    (workdir / "wrong.py").write_text(WRONG_CODE, encoding="utf-8")
    mypy: list[str | Path] = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--python-executable",
        python,
    ]
    mypy += ["--cache-dir", workdir / ".mypy_cache", "--no-incremental"]
    ok(run(*mypy, "use.py", cwd=workdir))
    wrong = run(*mypy, "wrong.py", cwd=workdir)
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert 'Incompatible return value type (got "str", expected "int")' in wrong.stdout
    assert "Cannot find implementation" not in wrong.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    ok(run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=ROOT))
    return out


def archive_text(wheel: Path, suffix: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(f".dist-info/{suffix}"))
        return archive.read(name).decode()


def test_sdist_and_wheel_hold_what_they_should(dist: Path) -> None:
    (wheel,) = dist.glob("jwtsess-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    assert "jwtsess/py.typed" in names
    assert "jwtsess/__init__.py" in names
    assert "jwtsess_pytest.py" in names  # the pytest11 entry point (docs/testing.md)
    assert "[pytest11]\njwtsess = jwtsess_pytest" in archive_text(wheel, "entry_points.txt")
    assert not any(n.startswith(("tests/", "keys/", "examples/")) for n in names)
    assert "License-Expression: MIT" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    (sdist,) = dist.glob("jwtsess-*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {m.split("/", 1)[1] for m in archive.getnames() if "/" in m}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "jwtsess/py.typed"} <= members
    assert not any(m.startswith("keys/") for m in members)  # dev secrets never ship
    ok(run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()), cwd=dist))


def test_wheel_in_a_fresh_venv_imports_and_type_checks(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("jwtsess-*.whl")
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, wheel, cwd=tmp_path)
    check_as_a_user(python, tmp_path / "user")


def test_editable_install_type_checks(dist: Path, tmp_path: Path) -> None:
    (sdist,) = dist.glob("jwtsess-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "src", filter="data")
    (tree,) = (tmp_path / "src").iterdir()
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, "-e", tree, cwd=tmp_path)
    check_as_a_user(python, tmp_path / "user")
    located = ok(run(python, "-c", "import jwtsess; print(jwtsess.__file__)", cwd=tmp_path))
    assert located.strip() == str(tree / "jwtsess" / "__init__.py")  # the tree, not a copy
