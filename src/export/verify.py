"""Checks an exported dataset against its ``SHA256SUMS`` and ``manifest.json``."""

from __future__ import annotations

import csv
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
    if manifest.get("kind") == "table":
        return problems + _table_problems(root, manifest, expected)
    pngs = sum(1 for relpath in expected if relpath.startswith("images/"))
    if METADATA in expected and pngs != manifest.get("n"):
        problems.append(f"inconsistent: {MANIFEST} says n={manifest.get('n')} but {pngs} images are listed")
    if METADATA in expected and (root / METADATA).is_file() and manifest.get("sources"):
        problems.extend(_source_problems(root, manifest))
    return problems


def _source_problems(root: Path, manifest: dict) -> list[str]:
    """``metadata.csv``'s rows per (source, label) against the manifest's ``sources`` counts."""
    with open(root / METADATA, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "source" not in rows[0]:
        return [f"inconsistent: {MANIFEST} counts sources but {METADATA} has no source column"]
    counted: dict[str, dict[int, int]] = {}
    for row in rows:
        per_class = counted.setdefault(row["source"], {})
        per_class[int(row["label"])] = per_class.get(int(row["label"]), 0) + 1
    problems = []
    for source in sorted(set(counted) | set(manifest["sources"])):
        listed = manifest["sources"].get(source, {}).get("per_class", [])
        found = counted.get(source, {})
        want = {label: count for label, count in enumerate(listed) if count}
        if want != found:
            problems.append(
                f"inconsistent: {MANIFEST} lists {sum(want.values())} {source} images per class {listed}, "
                f"{METADATA} has {sum(found.values())}"
            )
    return problems


def _table_problems(root: Path, manifest: dict, expected: dict[str, str]) -> list[str]:
    """``data.csv`` and ``data.parquet``: present, readable, as many rows as the manifest's ``n``,
    the manifest's columns, and (fills) the manifest's per-source row counts."""
    import pandas as pd  # tables only: image verification stays free of pandas

    problems = []
    columns = [c["name"] for c in manifest.get("columns", [])]
    readers = {"data.csv": pd.read_csv, "data.parquet": pd.read_parquet}
    for name, read in readers.items():
        if name not in expected:
            problems.append(f"missing: {name} is not listed in {CHECKSUMS}")
            continue
        try:
            frame = read(root / name)
        except Exception as exc:  # any parser failure means the file is not the table it claims to be
            problems.append(f"corrupt: {name} ({type(exc).__name__}: {exc})")
            continue
        if len(frame) != manifest.get("n"):
            problems.append(
                f"inconsistent: {MANIFEST} says n={manifest.get('n')} but {name} has {len(frame)} rows"
            )
        if [c for c in frame.columns if c != "source"] != columns:
            problems.append(f"inconsistent: {name}'s columns differ from {MANIFEST}'s columns")
        sources = manifest.get("sources") or {}
        if "source" in frame.columns:
            found = frame["source"].value_counts().to_dict()
            want = {source: entry["n"] for source, entry in sources.items() if entry["n"]}
            if found != want:
                problems.append(f"inconsistent: {MANIFEST} lists rows per source {want}, {name} has {found}")
    return problems
