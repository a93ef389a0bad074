"""bench/plot.py without a database: the per-bin series the pictures are drawn from, and the drawing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# bench/ is a directory of scripts, not a package: load bench/plot.py by its path.
_SPEC = importlib.util.spec_from_file_location("bench_plot", Path(__file__).resolve().parents[2] / "bench" / "plot.py")
plot = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(plot)


def test_the_pictures_can_be_drawn_in_the_project_venv():
    assert plot.available() is None  # matplotlib and numpy are pinned in requirements-dev.txt


def test_a_blocked_write_counts_in_every_bin_it_was_in_flight():
    # Origin 100.0; bins of 0.1 s over 1 s. Fast writes at 0.05 s and 0.85 s, one write blocked from
    # 0.25 s for 0.5 s (it ends at 0.75 s, in bin 7).
    samples = [(100.05, 0.001), (100.25, 0.5), (100.85, 0.002)]
    s = plot.series(samples, origin=100.0, end=101.0)
    assert s["bin_s"] == 0.1 and len(s["max_ms"]) == 10
    assert s["max_ms"][0] == 1.0
    assert s["max_ms"][1] is None  # nothing in flight
    assert s["max_ms"][2:8] == [500.0] * 6
    assert s["max_ms"][8] == 2.0 and s["max_ms"][9] is None
    assert s["p50_ms"][2] == 500.0 and s["p50_ms"][3] is None  # the median is of writes that started in the bin
    assert s["ops_per_s"][0] == 10.0 and s["ops_per_s"][7] == 10.0 and s["ops_per_s"][2] == 0.0
    assert sum(s["ops_per_s"]) * s["bin_s"] == pytest.approx(3)


def test_the_median_is_per_bin():
    samples = [(0.01, 0.001), (0.02, 0.003), (0.03, 0.002), (0.15, 0.010)]
    s = plot.series(samples, origin=0.0, end=0.2)
    assert s["p50_ms"] == [2.0, 10.0]


def test_no_samples_give_empty_bins():
    s = plot.series([], origin=0.0, end=0.25)
    assert s["max_ms"] == [None, None, None] and s["ops_per_s"] == [0.0, 0.0, 0.0]


def test_draw_writes_a_png_with_a_panel_per_timeline(tmp_path):
    writes = [(10.0 + i * 0.01, 0.001) for i in range(300)] + [(11.0, 1.2)]
    panels = [plot.timeline(title=f"run {n}", origin=10.0, end=13.0, writes=writes, reads=writes if n else None,
                            spans=[("transaction", 10.5, 12.5), ("operation", 11.0, 12.2), ("module", 11.5, 12.2)])
              for n in range(2)]
    assert panels[0]["spans"][1] == ("operation", 1.0, 2.2)
    path = plot.draw(tmp_path / "sub" / "x.png", "heading", panels, limit_ms=1250)
    data = path.read_bytes()
    assert path == tmp_path / "sub" / "x.png" and data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
