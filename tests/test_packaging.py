# -*- test-case-name: tests.test_packaging -*-
"""
The built wheel is installable and runnable: it ships the twistd plugin as
C{twisted/plugins/wardled_plugin.py} without any C{__init__.py} that would
overwrite Twisted's own, and C{twistd wardled} works from a fresh,
non-editable install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
SOURCES = ("setup.cfg", "pyproject.toml", "README.rst", "wardled", "twisted")


def _run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """
    A wheel built from a clean copy of the sources (no caches, no build
    directory left in the work tree).
    """
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache")
    for name in SOURCES:
        path = REPOSITORY / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, source / name)
    # A stray byte-code cache must not end up in the wheel either.
    (source / "wardled" / "__pycache__").mkdir(exist_ok=True)
    (source / "wardled" / "__pycache__" / "stray.cpython-311.pyc").write_bytes(b"")
    dist = base / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist,
         source, cwd=base)
    (built,) = dist.glob("wardled-*.whl")
    yield built


def test_wheel_contents(wheel: Path) -> None:
    """
    The plugin is shipped as a namespace-package module; nothing else under
    C{twisted/}, no tests and no byte code.
    """
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/wardled_plugin.py" in names
    assert [n for n in names if n.startswith("twisted/")] == [
        "twisted/plugins/wardled_plugin.py"
    ]
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert "wardled/tap.py" in names
    assert "wardled/tls.py" in names
    assert not [n for n in names if n.startswith("tests/")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "wardled-certs = wardled.certs:main" in text


def test_installed_wheel_runs(wheel: Path, tmp_path: Path) -> None:
    """
    In a fresh virtualenv with the wheel installed (not editable),
    C{twistd wardled --help} lists the flags, Twisted is intact and
    C{wardled-certs} works.
    """
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    _run(venv / "bin" / "pip", "install", "-q", wheel, cwd=tmp_path)
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    assert not (site_packages / "wardled.egg-link").exists()
    assert (site_packages / "wardled" / "tap.py").is_file()
    plugins = site_packages / "twisted" / "plugins"
    assert (plugins / "wardled_plugin.py").is_file()
    assert (site_packages / "twisted" / "__init__.py").stat().st_size > 0
    result = _run(venv / "bin" / "twistd", "-n", "wardled", "--help", cwd=tmp_path)
    for flag in ("--secure-port", "--etcd-servers", "--client-ca-file",
                 "--disable-admission-plugins", "--disable-http2-serving"):
        assert flag in result.stdout, flag
    where = _run(venv / "bin" / "python", "-c",
                 "import wardled.tap; print(wardled.tap.__file__)", cwd=tmp_path)
    assert where.stdout.strip() == str(site_packages / "wardled" / "tap.py")
    certs_dir = tmp_path / "certs"
    made = _run(venv / "bin" / "wardled-certs", "init", certs_dir, cwd=tmp_path)
    assert f"wrote {certs_dir}/kubeconfig" in made.stdout
    assert os.path.isfile(certs_dir / "client.p12")
