"""Smoke runs of the issue-18 reproductions (DHP continual learning, Q(s,s')/D3G, ANML): each
example end to end at a few steps, writing its table and figure to a temporary folder."""

from __future__ import annotations

import csv

import pytest
from example_helpers import load_example

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


@pytest.mark.parametrize(
    ("name", "files"),
    [
        ("dhp_continual", ["dhp_continual.csv", "dhp_continual_summary.md", "dhp_continual.png"]),
        (
            "qss_d3g",
            ["qss_d3g.csv", "qss_d3g_summary.md", "qss_gridworld.png", "d3g_pointmass.png"],
        ),
        ("anml_stream", ["anml_stream.csv", "anml_stream_summary.md", "anml_stream.png"]),
    ],
)
def test_example_smoke(tmp_path, name, files):
    rows = load_example(name).main(["--smoke", "--out", str(tmp_path)])
    assert rows
    for f in files:
        assert (tmp_path / f).stat().st_size > 0, f
    with open(tmp_path / files[0]) as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
