"""Loading MNIST from a local copy, and refusing every kind of bad file."""

import gzip
import hashlib
import io
import shutil
import zipfile

import numpy
import pytest

import mnist_large_cnn as cnn
from conftest import run_script

LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def check_real_mnist(loaded):
    """Facts about MNIST that any correct loader reproduces."""
    (x_train, y_train), (x_test, y_test), _ = loaded
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == numpy.uint8 and y_train.shape == (60000,)
    assert numpy.bincount(y_train).tolist() == LABEL_COUNTS
    assert (y_train[0], y_test[0]) == (5, 7)
    assert x_train.mean() / 255 == pytest.approx(0.1306605, abs=1e-6)


def test_loads_the_keras_npz(mnist_npz):
    check_real_mnist(cnn.load_mnist(mnist_npz))


def test_loads_a_folder_of_gzipped_idx_files(mnist_folder):
    loaded = cnn.load_mnist(mnist_folder)
    check_real_mnist(loaded)
    assert "IDX" in loaded[2]


def test_loads_a_folder_of_plain_idx_files(mnist_folder, mnist_npz, tmp_path):
    for packed in mnist_folder.glob("*-ubyte.gz"):
        with gzip.open(packed) as source, open(tmp_path / packed.stem, "wb") as out:
            shutil.copyfileobj(source, out)
    loaded = cnn.load_mnist(tmp_path)
    check_real_mnist(loaded)
    # Both layouts hold the same pixels.
    with numpy.load(mnist_npz) as reference:
        numpy.testing.assert_array_equal(loaded[1][0], reference["x_test"])


# Every case a user sent, and the whole kind of fault behind it.


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_error(source):
    with pytest.raises(cnn.UserError) as caught:
        cnn.load_mnist(source)
    return str(caught.value)


def test_a_truncated_download_is_named_as_damaged_and_left_alone(cases, tmp_path):
    damaged = tmp_path / "mnist.npz"
    shutil.copy(cases / "truncated.npz", damaged)
    before = digest(damaged)
    result = run_script("--data", damaged, "--output", tmp_path / "out")
    # One clear paragraph, no traceback, a failure status, the file intact.
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(damaged) in result.stderr and "damaged" in result.stderr
    assert digest(damaged) == before


def test_an_object_array_is_refused_without_unpickling(cases, monkeypatch):
    def no_unpickling(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr("pickle.loads", no_unpickling)
    monkeypatch.setattr("pickle.load", no_unpickling)
    message = load_error(cases / "object-array.npz")
    assert "object-array.npz" in message and "unpickling" in message


def test_flat_images_name_the_expected_and_found_shapes(cases):
    message = load_error(cases / "flat-images.npz")
    assert "(N, 28, 28)" in message and "(100, 784)" in message


def test_a_label_out_of_range_is_named_with_its_place(cases):
    with numpy.load(cases / "label-out-of-range.npz") as archive:
        where = int(numpy.flatnonzero(archive["y_train"] > 9)[0])
    message = load_error(cases / "label-out-of-range.npz")
    assert f"y_train[{where}] is 12" in message


def test_an_idx_file_with_a_bad_magic_number_is_named(cases):
    message = load_error(cases / "idx-bad-magic")
    assert "t10k-images-idx3-ubyte" in message
    assert "magic number" in message and "2051" in message


# The same faults, made here in other places of other files.


def small_arrays():
    rng = numpy.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (20, 28, 28), dtype=numpy.uint8),
        "y_train": rng.integers(0, 10, 20, dtype=numpy.uint8),
        "x_test": rng.integers(0, 256, (10, 28, 28), dtype=numpy.uint8),
        "y_test": rng.integers(0, 10, 10, dtype=numpy.uint8),
    }


def write_npz(path, **changes):
    arrays = small_arrays()
    arrays.update(changes)
    arrays = {name: value for name, value in arrays.items() if value is not None}
    numpy.savez(path, **arrays)
    return path


def test_a_valid_small_npz_loads(tmp_path):
    (x_train, y_train), (x_test, _), origin = cnn.load_mnist(
        write_npz(tmp_path / "ok.npz")
    )
    assert x_train.shape == (20, 28, 28) and x_test.shape == (10, 28, 28)
    assert "ok.npz" in origin


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"y_test": None}, "lacks the array(s) y_test"),
        ({"x_test": numpy.zeros((10, 28, 27), numpy.uint8)}, "(10, 28, 27)"),
        ({"x_train": numpy.zeros((20, 28, 28), numpy.float32)}, "float32"),
        ({"y_train": numpy.zeros(19, numpy.uint8)}, "one label per image"),
        ({"y_test": numpy.full(10, -1, numpy.int64)}, "y_test[0] is -1"),
        ({"y_train": numpy.full(20, 2.0)}, "whole numbers"),
        ({"x_test": numpy.array([None] * 10, dtype=object)}, "unpickling"),
    ],
)
def test_every_bad_array_is_named(tmp_path, changes, expected):
    message = load_error(write_npz(tmp_path / "bad.npz", **changes))
    assert expected in message and "bad.npz" in message


def test_a_file_that_is_not_an_npz_is_named_as_damaged(tmp_path):
    bogus = tmp_path / "mnist.npz"
    bogus.write_text("<html>proxy login page</html>")
    assert "damaged" in load_error(bogus)
    assert bogus.read_text() == "<html>proxy login page</html>"


def test_a_missing_path_says_what_to_give(tmp_path):
    assert "not found" in load_error(tmp_path / "nowhere.npz")


def write_idx_folder(folder, gzipped=False):
    folder.mkdir()
    arrays = small_arrays()
    for name, stem in cnn.IDX_NAMES.items():
        array = arrays[name]
        magic = cnn.IDX_MAGIC[array.ndim]
        header = magic.to_bytes(4, "big") + b"".join(
            size.to_bytes(4, "big") for size in array.shape
        )
        data = header + array.tobytes()
        if gzipped:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return folder


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_small_idx_folder_loads(tmp_path, gzipped):
    folder = write_idx_folder(tmp_path / "idx", gzipped)
    (x_train, y_train), _, _ = cnn.load_mnist(folder)
    numpy.testing.assert_array_equal(x_train, small_arrays()["x_train"])
    numpy.testing.assert_array_equal(y_train, small_arrays()["y_train"])


def test_a_bad_magic_number_in_a_labels_file_is_named(tmp_path):
    folder = write_idx_folder(tmp_path / "idx")
    labels = folder / "train-labels-idx1-ubyte"
    labels.write_bytes(cnn.IDX_MAGIC[3].to_bytes(4, "big") + labels.read_bytes()[4:])
    message = load_error(folder)
    assert "train-labels-idx1-ubyte" in message and "expected 2049" in message


def test_a_truncated_idx_file_is_named(tmp_path):
    folder = write_idx_folder(tmp_path / "idx")
    images = folder / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    message = load_error(folder)
    assert "t10k-images-idx3-ubyte" in message and "damaged" in message


def test_a_truncated_gzip_idx_file_is_named(tmp_path):
    folder = write_idx_folder(tmp_path / "idx", gzipped=True)
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-40])
    message = load_error(folder)
    assert "train-images-idx3-ubyte.gz" in message and "damaged" in message


def test_a_missing_idx_file_is_named(tmp_path):
    folder = write_idx_folder(tmp_path / "idx")
    (folder / "y_test").unlink(missing_ok=True)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    assert "t10k-labels-idx1-ubyte" in load_error(folder)


def test_an_out_of_range_label_in_an_idx_file_is_named(tmp_path):
    folder = write_idx_folder(tmp_path / "idx")
    labels = folder / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[8 + 3] = 200
    labels.write_bytes(bytes(data))
    assert "y_test[3] is 200" in load_error(folder)


def test_an_npz_member_that_is_not_an_array_is_named_as_damaged(tmp_path):
    bogus = tmp_path / "mnist.npz"
    write_npz(bogus)
    with zipfile.ZipFile(bogus, "a") as archive:
        archive.writestr("x_extra.npy", b"not an array at all")
    assert "damaged" in load_error(bogus)


def test_a_header_announcing_terabytes_is_refused_before_loading(tmp_path):
    bogus = tmp_path / "mnist.npz"
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**12, 28, 28)}
    member = io.BytesIO()
    numpy.lib.format.write_array_header_1_0(member, header)
    with zipfile.ZipFile(bogus, "w") as archive:
        archive.writestr("x_train.npy", member.getvalue())
    message = load_error(bogus)
    assert "damaged" in message and "announces" in message


def test_a_file_too_short_for_an_idx_header_is_named(tmp_path):
    folder = write_idx_folder(tmp_path / "idx")
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00")
    assert "too few for an IDX file" in load_error(folder)


def test_an_idx_header_whose_size_overflows_is_named(tmp_path):
    folder = write_idx_folder(tmp_path / "idx")
    images = folder / "train-images-idx3-ubyte"
    sizes = (2**31, 2**31, 4)
    images.write_bytes(
        (2051).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in sizes)
    )
    assert "header announces" in load_error(folder)
