"""The mkdocs reference in docs/: it builds with --strict, its generated CLI page matches the
real parser, and its config page documents every key of the shipped config.yaml."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SCRIPT = ROOT / "scripts" / "cli_reference.py"


def load_script():
    spec = importlib.util.spec_from_file_location("cli_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mapping_keys(node: object) -> set[str]:
    """Every key of every mapping in a parsed YAML document."""
    if isinstance(node, dict):
        return {str(key) for key in node} | {k for value in node.values() for k in mapping_keys(value)}
    if isinstance(node, list):
        return {k for value in node for k in mapping_keys(value)}
    return set()


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.is_file():
        pytest.skip(f"mkdocs is not installed next to {sys.executable} (pip install mkdocs, the test extra)")
    site = tmp_path / "site"
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index", "cli", "config", "formats", "preprocessing"):
        assert (site / page / "index.html").is_file() or (site / f"{page}.html").is_file(), page


def test_cli_reference_matches_parser() -> None:
    expected = load_script().render()
    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == expected, "docs/cli.md is out of date: run python scripts/cli_reference.py"


def test_cli_reference_names_every_command_and_option() -> None:
    from miffi.cli import build_parser

    script = load_script()
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for name, _, parser in script.subcommands(build_parser()):
        assert f"## miffi {name}\n" in text
        for action in parser._actions:
            for option in action.option_strings:
                assert option in text, f"miffi {name} {option}"


def test_cli_reference_check_flag(tmp_path: Path) -> None:
    script = load_script()
    stale = tmp_path / "cli.md"
    stale.write_text("# out of date\n", encoding="utf-8")
    assert script.main(["--check", "--output", str(stale)]) == 1
    assert script.main(["--output", str(stale)]) == 0
    assert script.main(["--check", "--output", str(stale)]) == 0


def test_config_reference_documents_every_key() -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    missing = sorted(key for key in mapping_keys(config) if f"`{key}`" not in text)
    assert not missing, f"config.yaml keys not documented in docs/config.md: {missing}"


def test_config_reference_documents_every_schema_key() -> None:
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))

    def properties(node: object) -> set[str]:
        if not isinstance(node, dict):
            return set()
        found = set(node.get("properties", {})) if isinstance(node.get("properties"), dict) else set()
        return found | {k for value in node.values() for k in properties(value)}

    text = (DOCS / "config.md").read_text(encoding="utf-8")
    missing = sorted(key for key in properties(schema) if f"`{key}`" not in text)
    assert not missing, f"schema keys not documented in docs/config.md: {missing}"
