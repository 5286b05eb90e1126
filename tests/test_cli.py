"""The command line, run as a user runs it: in a fresh process."""

import json
import re

import pytest

import mnist_large_cnn as cnn
from conftest import history_without_times, run_script, two_runs

ERROR_LINE = re.compile(r"^Large CNN Error: \d+\.\d\d%$", re.MULTILINE)


def test_a_short_real_run_prints_the_error_and_writes_its_outputs(mnist_npz, tmp_path):
    out = tmp_path / "run"
    result = run_script(
        "--data", mnist_npz, "--limit", 2000, "--epochs", 1, "--output", out
    )
    assert result.returncode == 0, result.stderr
    assert ERROR_LINE.search(result.stdout)
    assert "(2000, 1, 28, 28)" in result.stdout and "59,933" in result.stdout
    assert "keras 3." in result.stdout and str(mnist_npz) in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    # The printed error is the one the summary records, from the test accuracy.
    printed = float(ERROR_LINE.search(result.stdout).group()[17:-1])
    assert printed == pytest.approx(100 - summary["test_accuracy"] * 100, abs=0.005)
    assert summary["train_images"] == 2000 and summary["test_images"] == 10000
    assert summary["seed"] == 7 and summary["options"]["epochs"] == 1
    assert summary["options"]["xla"] is False
    assert len(summary["epoch_seconds"]) == 1 and summary["total_seconds"] > 0
    assert [row["epoch"] for row in history_without_times(out)] == ["0"]
    assert (out / "model.keras").stat().st_size > 100_000
    # No temporary files are left beside the outputs.
    assert sorted(p.name for p in out.iterdir()) == [
        "history.csv",
        "model.keras",
        "summary.json",
    ]


def test_two_runs_with_the_same_seed_give_identical_histories(mnist_npz, tmp_path):
    (_, first), (_, second) = two_runs(
        "--data", mnist_npz, "--limit", 1000, "--epochs", 2, tmp_path
    )
    # Every loss and accuracy, to the last digit, on both epochs.
    assert len(first) == 2
    assert first == second


def test_without_onednn_the_run_falls_back_to_xla_and_still_repeats(
    mnist_npz, tmp_path
):
    """TF_ENABLE_ONEDNN_OPTS=0 removes TensorFlow's channels-first CPU kernels."""
    runs = two_runs(
        "--data",
        mnist_npz,
        "--limit",
        1000,
        "--epochs",
        2,
        tmp_path,
        env={"TF_ENABLE_ONEDNN_OPTS": "0"},
    )
    for (result, _), name in zip(runs, ("first", "second"), strict=True):
        assert ERROR_LINE.search(result.stdout)
        assert "compiled with XLA" in result.stdout
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["options"]["xla"] is True
        assert summary["options"]["data_format"] == "channels_first"
    (_, first), (_, second) = runs
    assert len(first) == 2
    assert first == second


def test_without_network_or_local_data_the_ways_out_are_given(tmp_path):
    blocked = "http://127.0.0.1:9"  # nothing listens on the discard port
    result = run_script(
        "--output",
        tmp_path / "out",
        env={
            "MNIST_DATA": None,
            "KERAS_HOME": str(tmp_path / "keras"),
            "HTTPS_PROXY": blocked,
            "https_proxy": blocked,
            "HTTP_PROXY": blocked,
            "http_proxy": blocked,
        },
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Could not download MNIST" in result.stderr
    for way_out in ("--data", "MNIST_DATA", "mnist.npz", "KERAS_HOME"):
        assert way_out in result.stderr
    assert "verify" not in result.stderr.lower()
    # Nothing half-downloaded is left in the cache.
    assert not list((tmp_path / "keras").rglob("mnist.npz*"))


@pytest.mark.parametrize(
    "option, value",
    [("--epochs", "0"), ("--batch-size", "-5"), ("--limit", "0"), ("--seed", "x")],
)
def test_zero_negative_or_malformed_counts_are_refused(option, value, capsys):
    with pytest.raises(SystemExit) as stopped:
        cnn.parse_args([option, value])
    assert stopped.value.code == 2
    assert option in capsys.readouterr().err


def test_help_shows_the_2017_defaults(capsys):
    with pytest.raises(SystemExit):
        cnn.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("default: 10", "default: 200", "default: 7"):
        assert default in text


def test_an_output_folder_that_cannot_be_written_fails_before_training(
    mnist_npz, tmp_path, capsys
):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    status = cnn.main(["--data", str(mnist_npz), "--output", str(blocker / "run")])
    err = capsys.readouterr()
    assert status == 2
    assert "Cannot write to the output folder" in err.err
    assert "Epoch" not in err.out and "Large CNN Error" not in err.out
    assert blocker.read_text() == "keep me"
