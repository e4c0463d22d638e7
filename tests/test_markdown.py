"""robustlabel.markdown: the one Markdown table writer."""

from __future__ import annotations

import pytest

from robustlabel.markdown import markdown_table


def test_header_alignment_and_rows() -> None:
    text = markdown_table(["loss", "ms", "ratio"], [["GCE", "1.234", 0.98], ["CE", 1, "1.00"]], align="lrr")
    assert text.split("\n") == ["| loss | ms | ratio |", "|:--|--:|--:|", "| GCE | 1.234 | 0.98 |", "| CE | 1 | 1.00 |"]
    assert markdown_table(["a", "b"], []) == "| a | b |\n|---|---|"


def test_cells_cannot_break_the_table() -> None:
    assert markdown_table(["x"], [["a|b\nc"]]).split("\n")[2] == "| a\\|b c |"


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="row 1 has 1 cells for 2 columns"):
        markdown_table(["a", "b"], [["1", "2"], ["3"]])
    with pytest.raises(ValueError, match="align has 1 codes for 2 columns"):
        markdown_table(["a", "b"], [], align="l")
    with pytest.raises(ValueError, match=r"unknown alignment codes \['c'\]"):
        markdown_table(["a", "b"], [], align="lc")
