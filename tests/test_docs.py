"""The repository explains itself: its documents exist, and nothing points at files users do not have."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("docs/method.md", "docs/data.md", "docs/synthetic_world.md")


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.split() if (ROOT / p).is_file()]


def test_docs_exist_and_are_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for doc in DOCS:
        assert (ROOT / doc).is_file(), doc
        assert f"]({doc})" in readme, f"README does not link {doc}"


def test_no_file_cites_the_internal_design_notes() -> None:
    offenders = []
    for rel in _tracked():
        if rel.endswith((".py", ".md", ".yaml", ".ipynb", ".txt", ".toml")) and rel != "tests/test_docs.py":
            if "DESIGN.md" in (ROOT / rel).read_text(errors="replace") or "DESIGN 2." in (ROOT / rel).read_text(errors="replace"):
                offenders.append(rel)
    assert offenders == []
