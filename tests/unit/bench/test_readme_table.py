"""The README's performance table is generated from bench/results.json, never typed by hand."""
from __future__ import annotations

import json

import pytest

from bench import readme_table
from bench.common import DEFAULT_RESULTS


def test_committed_readme_matches_the_committed_results() -> None:
    rows = json.loads(DEFAULT_RESULTS.read_text())
    doc = readme_table.README.read_text()
    assert readme_table.current_block(doc) == readme_table.render(rows), (
        "README.md's performance table is stale: run `python -m bench.readme_table`"
    )


def test_every_result_row_is_in_the_table_with_what_it_measures() -> None:
    rows = json.loads(DEFAULT_RESULTS.read_text())
    table = readme_table.current_block(readme_table.README.read_text())
    for row in rows:
        line = next(line for line in table.splitlines() if f"`{row['name']}`" in line)
        assert row["compares"].replace("|", "\\|") in line


def test_render_and_replace(tmp_path) -> None:
    rows = [
        {"name": "a.speed", "value": 3.25, "unit": "x", "compares": "old s / new s", "target": ">= 3x", "passed": True, "notes": "n|1"},
        {"name": "gpu.training", "value": None, "unit": "", "compares": "GPU", "target": None, "passed": None,
         "notes": "not measured: no CUDA device"},
        {"name": "b.rate", "value": 2018.4, "unit": "x real time", "compares": "c", "target": None, "passed": False, "notes": ""},
    ]
    table = readme_table.render(rows)
    assert "| `a.speed` | old s / new s | 3.25× | >= 3x | pass | n\\|1 |" in table
    assert "| `gpu.training` | GPU | not measured |  |  | not measured: no CUDA device |" in table
    assert "2,018 x real time" in table and "**fail**" in table
    doc = f"intro\n{readme_table.START}\nold\n{readme_table.END}\noutro\n"
    new = readme_table.replace_block(doc, table)
    assert new.startswith("intro\n") and new.endswith("\noutro\n") and readme_table.current_block(new) == table
    results, readme = tmp_path / "r.json", tmp_path / "README.md"
    results.write_text(json.dumps(rows))
    readme.write_text(doc)
    assert readme_table.main(["--results", str(results), "--readme", str(readme), "--check"]) == 1
    assert readme_table.main(["--results", str(results), "--readme", str(readme)]) == 0
    assert readme_table.main(["--results", str(results), "--readme", str(readme), "--check"]) == 0
    with pytest.raises(ValueError, match="markers"):
        readme_table.replace_block("no markers", table)
