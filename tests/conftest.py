"""Shared fixtures: where the real MNIST and the user-sent cases are.

Tests that need the real MNIST read it from the file or folder named by the
MNIST_DATA environment variable. Without it they are skipped, except under
CI (CI=true), where a missing data set is an error: there they must run.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "mnist_large_cnn.py"
CASES = Path(os.environ.get("MNIST_CASES", ROOT.parent / "shared" / "cases"))


def _need(path, what):
    if path and Path(path).exists():
        return Path(path)
    message = f"{what} not found ({path or 'not set'})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; under CI the real-data tests must run")
    pytest.skip(message)


@pytest.fixture(scope="session")
def mnist_npz():
    """The real MNIST as a Keras-layout .npz, from $MNIST_DATA."""
    return _need(os.environ.get("MNIST_DATA"), "MNIST_DATA")


@pytest.fixture(scope="session")
def mnist_folder(mnist_npz):
    """The folder of the real MNIST, which also holds the four .gz IDX files."""
    return mnist_npz.parent


@pytest.fixture(scope="session")
def cases():
    """The inputs that users sent, each with its right behaviour."""
    return _need(CASES, "the cases folder (MNIST_CASES)")


@pytest.fixture(scope="session")
def trained_model(mnist_npz, tmp_path_factory):
    """A model trained by the script with the 2017 settings on all 60,000
    images, but for 2 epochs instead of 10 to keep the tests short."""
    out = tmp_path_factory.mktemp("trained")
    result = run_script("--data", mnist_npz, "--epochs", 2, "--output", out)
    assert result.returncode == 0, result.stderr
    return out / "model.keras"


def run_script(*args, env=None, timeout=600):
    """Run the training script as a user would, in a fresh process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    for name, value in list(full_env.items()):
        if value is None:
            del full_env[name]
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=timeout,
    )


def history_without_times(folder):
    """Loss and accuracy per epoch from history.csv, without the wall time,
    which differs from run to run."""
    with open(Path(folder) / "history.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        assert float(row.pop("seconds")) > 0
    return rows


def two_runs(*options, env=None):
    """Run the same command twice, into two folders.

    The last option is the folders' parent. Returns each run's completed
    process and its history.
    """
    *options, parent = options
    runs = []
    for name in ("first", "second"):
        result = run_script(*options, "--output", parent / name, env=env)
        assert result.returncode == 0, result.stderr
        runs.append((result, history_without_times(parent / name)))
    return runs
