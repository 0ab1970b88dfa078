"""Checks an exported dataset against its ``SHA256SUMS`` and ``manifest.json``."""

from __future__ import annotations

import json
from pathlib import Path

from src.export.writer import CHECKSUMS, FORMAT_VERSION, MANIFEST, METADATA
from src.utils.files import file_sha256


def verify_dataset(root: Path) -> list[str]:
    """Problems found (empty when the directory is intact): each names the file and what is wrong."""
    root = Path(root)
    sums_path = root / CHECKSUMS
    if not sums_path.is_file():
        return [f"missing: {CHECKSUMS} (not an exported dataset, or an interrupted export)"]
    expected: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(sums_path.read_text().splitlines(), start=1):
        digest, sep, relpath = line.partition("  ")
        if not sep or len(digest) != 64:
            problems.append(f"corrupt: {CHECKSUMS} line {number}")
            continue
        expected[relpath] = digest
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {CHECKSUMS}
    for relpath in sorted(expected.keys() - present):
        problems.append(f"missing: {relpath}")
    for relpath in sorted(present - expected.keys()):
        problems.append(f"extra: {relpath}")
    for relpath in sorted(expected.keys() & present):
        if file_sha256(root / relpath) != expected[relpath]:
            problems.append(f"altered: {relpath}")
    problems.extend(_manifest_problems(root, expected))
    return problems


def _manifest_problems(root: Path, expected: dict[str, str]) -> list[str]:
    if MANIFEST not in expected or not (root / MANIFEST).is_file():
        return [] if MANIFEST in expected else [f"missing: {MANIFEST} is not listed in {CHECKSUMS}"]
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except json.JSONDecodeError as exc:
        return [f"corrupt: {MANIFEST} ({exc})"]
    problems = []
    if manifest.get("format_version") != FORMAT_VERSION:
        problems.append(
            f"unsupported: {MANIFEST} format_version {manifest.get('format_version')} (expected {FORMAT_VERSION})"
        )
    pngs = sum(1 for relpath in expected if relpath.startswith("images/"))
    if METADATA in expected and pngs != manifest.get("n"):
        problems.append(f"inconsistent: {MANIFEST} says n={manifest.get('n')} but {pngs} images are listed")
    return problems
