"""benchmarks/README.md's tables are generated from benchmarks/results/ and cannot drift from
them; every benchmark says how to run it, and every result file it writes says how it was made.
Standard library only (no torch), well under a second."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_readme_tables_are_those_results_give():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "report.py"), "--check"], check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_benchmark_script_gives_its_command():
    for script in sorted(BENCHMARKS.glob("*.py")):
        if '__name__ == "__main__"' not in script.read_text():
            continue  # a module the scripts share (provenance.py, equal_load.py)
        docstring = ast.get_docstring(ast.parse(script.read_text())) or ""
        assert f"benchmarks/{script.name}" in docstring, f"{script.name}: no usage line in its docstring"


def test_every_result_file_written_records_provenance():
    for script in sorted(BENCHMARKS.glob("*.py")):
        source = script.read_text()
        if re.search(r"write_text(_atomic)?\(.*json\.dumps", source):
            assert "provenance()" in source, f"{script.name} writes JSON without provenance()"


def test_every_result_file_names_its_command_a_known_commit_packages_and_machine():
    """Files from before provenance() existed say so in words, but still name the commit that
    added them; a figure whose commit git does not know cannot be traced."""
    history = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=BENCHMARKS, check=False,
                             capture_output=True, text=True)
    if history.stdout.strip() != "false":
        pytest.skip("needs the git history: not a full clone")
    for result in sorted((BENCHMARKS / "results").glob("*.json")):
        recorded = json.loads(result.read_text())
        assert recorded["command"].strip() and recorded["packages"] and recorded["machine"], result.name
        commit = re.search(r"\b[0-9a-f]{7,40}\b", recorded["commit"])
        assert commit, f"{result.name}: no commit in {recorded['commit']!r}"
        known = subprocess.run(["git", "cat-file", "-e", f"{commit.group()}^{{commit}}"], cwd=BENCHMARKS, check=False,
                               capture_output=True)
        assert known.returncode == 0, f"{result.name}: git does not know commit {commit.group()}"
