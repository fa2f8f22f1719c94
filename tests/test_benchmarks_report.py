"""benchmarks/README.md's tables are generated from benchmarks/results/ and cannot drift from
them; every benchmark says how to run it, and every result file it writes says how it was made.
Standard library only (no torch), well under a second."""

import ast
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_readme_tables_are_those_results_give():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "report.py"), "--check"], check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_benchmark_script_gives_its_command():
    for script in sorted(BENCHMARKS.glob("*.py")):
        if script.name == "provenance.py":
            continue
        docstring = ast.get_docstring(ast.parse(script.read_text())) or ""
        assert f"benchmarks/{script.name}" in docstring, f"{script.name}: no usage line in its docstring"


def test_every_result_file_written_records_provenance():
    for script in sorted(BENCHMARKS.glob("*.py")):
        source = script.read_text()
        if re.search(r"write_text(_atomic)?\(.*json\.dumps", source):
            assert "provenance()" in source, f"{script.name} writes JSON without provenance()"
