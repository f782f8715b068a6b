"""Packaging: the project installs as a package whose metadata agrees with requirements.txt.

The wheel is built from a copy of the tracked files (so the working tree gets no
``build/`` folder) without network access: ``--no-build-isolation`` uses the
setuptools already in the environment.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TEST_ONLY = {"pytest", "wheel", "gradio-client", "playwright", "greenlet", "nbclient", "nbformat", "ipykernel"}


def _pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, version = line.split("==")
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def test_dependencies_equal_the_runtime_pins_of_requirements() -> None:
    """gradio_client is pulled in by gradio; the test-only pins stay out of the package."""
    required = _pins((ROOT / "requirements.txt").read_text().splitlines())
    runtime = {k: v for k, v in required.items() if k not in TEST_ONLY}
    assert _pins(PYPROJECT["project"]["dependencies"]) == runtime


def test_requires_python_matches_numpy_pin() -> None:
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


@pytest.mark.parametrize("name,target", sorted(PYPROJECT["project"]["scripts"].items()))
def test_console_script_targets_exist(name: str, target: str) -> None:
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func)), name


def test_wheel_holds_packages_configs_and_entry_points(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if rel.startswith(("faa_core/", "training/", "app_ui/")) or rel in ("app.py", "pyproject.toml", "README.md"):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("app.py", "app_ui/__init__.py", "faa_core/pipeline.py", "training/loop/trainer.py",
                 "training/eval/evaluate.py", "training/ingest/prepare.py", "training/configs/faa.yaml",
                 "training/configs/experiments/small.yaml", "training/synth/presets.yaml"):
        assert must in names, must
    assert not any(n.startswith("tests/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    for name, target in PYPROJECT["project"]["scripts"].items():
        assert f"{name} = {target}" in text
