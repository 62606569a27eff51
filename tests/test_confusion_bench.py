"""bench/confusion.py: the table of where reference classes went, from committed generalise results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import confusion  # noqa: E402

RESULT = Path(__file__).resolve().parents[1] / "bench" / "results" / "generalise-v14-cb.json"


def test_rows_are_the_saved_fractions_in_percent():
    raw = json.loads(RESULT.read_text())
    ncr = raw["result"]["select"]["confusion"]["NCR"]
    case = raw["result"]["select"]["per_case"]["BraTS2021_00007"]
    lines = confusion.table({"v14-cb": raw}, "select", ["BraTS2021_00007"]).splitlines()
    assert len(lines) == 3 and lines[0].count("|") == 6
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[0] == "v14-cb"
    want = [round(100 * ncr[k]) for k in ("background", "NCR", "ED", "ET")]
    assert [int(v.rstrip("%")) for v in cells[1].split(" / ")] == want
    assert sum(want) in (99, 100, 101)  # a row of fractions of the reference NCR voxels
    assert cells[4] == f"{case['WT']:.2f} / {case['TC']:.2f} / {case['ET']:.2f}"


def test_missing_class_case_and_cohort():
    rec = {"result": {"select": {"confusion": {"NCR": None}, "per_case": {}}}}
    lines = confusion.table({"r": rec}, "select", ["X", "Y"]).splitlines()
    assert lines[0].endswith("| X WT / TC / ET | Y WT / TC / ET |")
    assert lines[2] == "| r | - | - | - | - | - |"
    with pytest.raises(ValueError, match="no cohort 'stress'"):
        confusion.table({"r": rec}, "stress")


def test_unknown_result_is_one_line_and_exit_2(capsys):
    assert confusion.main(["no-such-result"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no saved result no-such-result") and "\n" not in err


def test_read_results_names_every_missing_one(tmp_path):
    from results_io import read_results, write_result

    write_result("generalise-a", {"x": 1}, folder=tmp_path)
    assert read_results("generalise", ["a"], tmp_path)["a"]["result"] == {"x": 1}
    with pytest.raises(ValueError, match=r"^no saved result b, c in "):
        read_results("generalise", ["b", "a", "c"], tmp_path)
