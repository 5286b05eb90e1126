"""The speed benchmark, run in its tiny mode so that it cannot rot.

Nothing here checks a time: the figures of a tiny run mean nothing.
"""

import re
import subprocess
import sys

from conftest import ROOT


def test_the_tiny_benchmark_writes_a_table_with_every_configuration(
    mnist_npz, tmp_path
):
    out = tmp_path / "results.md"
    result = subprocess.run(
        [
            sys.executable,
            ROOT / "benchmarks" / "train_speed.py",
            "--tiny",
            "--data",
            mnist_npz,
            "--backends",
            "tensorflow",
            "no_such_backend",
            "--out",
            out,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text in result.stdout
    # Both layouts timed under TensorFlow, with a number in every column.
    number = r"[\d,]+(\.\d+)?%?"
    for layout in ("channels_first", "channels_last"):
        row = rf"^\| tensorflow \| {layout} (\| {number} ){{5}}\| {number} \|$"
        assert re.search(row, text, re.MULTILINE), text
    # A backend that is not installed is reported, not failed.
    assert "| no_such_backend | channels_first | not installed |" in text
    assert "891,900 multiply-adds per image" in text
    assert re.search(r"Ceiling: .* \d+ GFLOP/s", text)
