"""--predict on the command line, and runs that survive an interruption."""

import json
import re
import signal
import subprocess
import sys
import time

import keras
import pytest

import mnist_large_cnn as cnn
from conftest import ROOT, SCRIPT, history_without_times, run_script

GUESS = r"(\d) \((\d\.\d{3})\)"  # a digit and its probability
LINE = re.compile(rf"^(.+): {GUESS}, {GUESS}, {GUESS}$")


def test_predict_prints_the_top_three_digits_per_picture(
    trained_model, cases, tmp_path
):
    labels = json.loads((cases / "digit-labels.json").read_text())
    pictures = [cases / name for name in sorted(labels)]
    result = run_script(
        "--predict",
        *pictures,
        "--model",
        trained_model,
        "--show-input",
        tmp_path / "seen",
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if LINE.match(line)]
    assert f"What the network saw is drawn in {tmp_path / 'seen'}" in result.stdout
    for picture, line in zip(pictures, lines, strict=True):
        match = LINE.match(line)
        assert match, line
        # The path, then three different digits, the true one first.
        assert match.group(1) == str(picture)
        assert int(match.group(2)) == labels[picture.name]
        assert len({match.group(2), match.group(4), match.group(6)}) == 3
        assert (tmp_path / "seen" / f"{picture.stem}-input.png").is_file()


def test_a_bad_picture_fails_alone_with_a_clear_message(trained_model, cases, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    good = cases / "digit-photo-like-rgb.png"
    result = run_script("--predict", bad, good, "--model", trained_model)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(bad) in result.stderr and "not a picture" in result.stderr
    assert f"{good}: 2 (" in result.stdout


def test_a_missing_model_says_how_to_make_one(cases, tmp_path, capsys):
    picture = cases / "digit-photo-like-rgb.png"
    status = cnn.main(["--predict", str(picture), "--model", str(tmp_path / "x.keras")])
    assert status == 2
    assert "No trained model at" in capsys.readouterr().err


def test_a_model_that_would_run_stored_code_is_refused(cases, tmp_path):
    unsafe = keras.Sequential(
        [keras.Input((1, 28, 28)), keras.layers.Lambda(lambda x: x * 2)]
    )
    path = tmp_path / "unsafe.keras"
    unsafe.save(path)
    result = run_script(
        "--predict", cases / "digit-photo-like-rgb.png", "--model", path
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "was refused" in result.stderr and str(path) in result.stderr


# Never lose a run


def test_a_killed_run_resumes_to_the_history_of_an_unbroken_one(mnist_npz, tmp_path):
    options = ["--data", mnist_npz, "--limit", 1000, "--epochs", 2]
    unbroken = run_script(*options, "--output", tmp_path / "unbroken")
    assert unbroken.returncode == 0, unbroken.stderr

    out = tmp_path / "broken"
    first = subprocess.Popen(
        [sys.executable, SCRIPT, *map(str, options), "--output", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill it as soon as its first epoch is saved.
    saved = out / "unfinished-run" / "training_metadata.json"
    deadline = time.monotonic() + 300
    while not saved.exists() and first.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()

    resumed = run_script(*options, "--output", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming the interrupted run" in resumed.stdout
    # Same losses and accuracies, epoch by epoch, and the same final error.
    assert history_without_times(out) == history_without_times(tmp_path / "unbroken")
    assert len(history_without_times(out)) == 2
    error = re.compile(r"Large CNN Error: .*%")
    assert error.search(resumed.stdout).group() == error.search(unbroken.stdout).group()
    assert json.loads((out / "summary.json").read_text())["resumed"] is True
    assert not (out / "unfinished-run").exists()


def test_a_finished_run_is_not_overwritten_without_asking(mnist_npz, tmp_path, capsys):
    out = tmp_path / "run"
    options = [f"--data={mnist_npz}", "--limit=400", "--epochs=1", f"--output={out}"]
    assert cnn.main(options) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    assert cnn.main(options) == 2
    refusal = capsys.readouterr().err
    assert "already holds" in refusal and "--overwrite" in refusal
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    assert cnn.main([*options, "--overwrite"]) == 0
    # The new run replaced the files only after it finished.
    assert (out / "summary.json").read_bytes() != before["summary.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(before)


def test_an_unfinished_run_with_other_options_is_not_mixed_in(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "unfinished-run").mkdir(parents=True)
    (out / "unfinished-run" / "options.json").write_text(json.dumps({"seed": 3}))
    args = cnn.parse_args(["--output", str(out), "--seed", "7"])
    with pytest.raises(cnn.UserError, match="unfinished run with other options"):
        cnn.prepare_output(args, cnn.run_options(args, "somewhere"))
    assert (out / "unfinished-run" / "options.json").exists()


def test_a_folder_of_the_users_named_like_ours_is_left_alone(tmp_path):
    out = tmp_path / "run"
    (out / "unfinished-run").mkdir(parents=True)
    (out / "unfinished-run" / "mine.txt").write_text("precious")
    args = cnn.parse_args(["--output", str(out), "--overwrite"])
    with pytest.raises(cnn.UserError, match="not made by this script"):
        cnn.prepare_output(args, cnn.run_options(args, "somewhere"))
    assert (out / "unfinished-run" / "mine.txt").read_text() == "precious"


def test_a_damaged_record_of_an_unfinished_run_is_refused_not_guessed(tmp_path):
    out = tmp_path / "run"
    (out / "unfinished-run").mkdir(parents=True)
    (out / "unfinished-run" / "options.json").write_text("{not json")
    args = cnn.parse_args(["--output", str(out)])
    with pytest.raises(cnn.UserError, match="unfinished run with other options"):
        cnn.prepare_output(args, cnn.run_options(args, "somewhere"))
    assert (out / "unfinished-run" / "options.json").read_text() == "{not json"
