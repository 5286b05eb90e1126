"""Preparing users' pictures the way MNIST was made, and reading them.

Most tests draw their own pictures with Pillow. The ones that need real
MNIST digits or a trained network use the session fixtures of conftest.py.
"""

import json
import struct
import zlib
from pathlib import Path

import numpy
import pytest
from PIL import Image, ImageDraw

from digit_pictures import PictureError, prepare_digit, save_input_figure
from make_test_digits import make_pictures

# The two pictures that users sent, in the cases folder.
CASE_NAMES = ["digit-black-on-white-28px.png", "digit-photo-like-rgb.png"]


# Helpers


def drawn_seven(size=200):
    """Return a hand-drawn-looking 7 as ink amounts from 0 to 1 (size x size)."""
    picture = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(picture)
    s = size / 200
    width = round(14 * s)
    pen.line([(60 * s, 50 * s), (140 * s, 45 * s)], fill=255, width=width)
    pen.line([(140 * s, 45 * s), (95 * s, 160 * s)], fill=255, width=width)
    return numpy.asarray(picture, dtype=numpy.float64) / 255


def save_grey(ink, path, paper=255.0, colour=0.0):
    """Save ink amounts as a grey PNG: paper where 0, colour where 1."""
    grey = paper * (1 - ink) + colour * ink
    Image.fromarray(numpy.clip(numpy.rint(grey), 0, 255).astype(numpy.uint8)).save(path)
    return path


def similarity(a, b):
    """Correlation of two prepared inputs: 1 means the same picture.

    Rounding the centre of mass to whole pixels can move a digit by one pixel
    between two versions of the same picture, so the best correlation over
    shifts of up to one pixel is returned.
    """
    a, b = numpy.asarray(a, dtype=numpy.float64), numpy.asarray(b, numpy.float64)
    best = -1.0
    for down in (-1, 0, 1):
        for right in (-1, 0, 1):
            moved = numpy.roll(b, (down, right), axis=(0, 1))
            best = max(best, numpy.corrcoef(a.ravel(), moved.ravel())[0, 1])
    return best


def write_png(path, width, height, bit_depth=1, colour_type=0):
    """Write a valid, all-black PNG of any size without holding it in memory.

    Used to make pictures too large to open safely; the pixel data is
    compressed row by row, so a 20000 x 20000 file takes a fraction of a
    second and only a few kilobytes.
    """

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    row = b"\0" * (1 + (width * bit_depth + 7) // 8)  # filter byte + pixels
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n")
        file.write(chunk(b"IHDR", header))
        file.write(chunk(b"IDAT", data))
        file.write(chunk(b"IEND", b""))
    return path


def check_mnist_like(prepared):
    """Assert everything the MNIST recipe promises about a prepared input."""
    assert prepared.shape == (28, 28)
    assert prepared.dtype == numpy.float32
    assert prepared.min() >= 0 and prepared.max() <= 1
    assert prepared.max() == pytest.approx(1.0)  # the ink reaches full white
    # The background is exactly black: at least all the pixels outside the
    # 20 x 20 box of the digit (384 of 784) are 0.
    assert (prepared == 0).mean() >= 384 / 784
    rows, columns = numpy.indices(prepared.shape)
    total = prepared.sum()
    assert abs((rows * prepared).sum() / total - 14) <= 1
    assert abs((columns * prepared).sum() / total - 14) <= 1
    ink_rows = numpy.nonzero(prepared.any(axis=1))[0]
    ink_columns = numpy.nonzero(prepared.any(axis=0))[0]
    height = ink_rows[-1] - ink_rows[0] + 1
    width = ink_columns[-1] - ink_columns[0] + 1
    assert height <= 20 and width <= 20
    assert max(height, width) >= 18  # the longer side was scaled to 20


# Fixtures


@pytest.fixture(scope="module")
def model(trained_model):
    import keras

    return keras.saving.load_model(trained_model, safe_mode=True)


@pytest.fixture(scope="module")
def mnist(mnist_npz):
    with numpy.load(mnist_npz, allow_pickle=False) as data:
        return data["x_test"][:200], data["y_test"][:200]


@pytest.fixture(scope="module")
def case_labels(cases):
    return json.loads((cases / "digit-labels.json").read_text())


def top3(model, prepared):
    """Return the three most likely digits and their probabilities."""
    probabilities = model.predict(prepared.reshape(1, 1, 28, 28), verbose=0)[0]
    best = numpy.argsort(probabilities)[::-1][:3]
    return [(int(digit), float(probabilities[digit])) for digit in best]


# The prepared input looks like MNIST


@pytest.mark.parametrize("name", CASE_NAMES)
def test_case_pictures_are_prepared_like_mnist(cases, name):
    check_mnist_like(prepare_digit(cases / name))


def test_generated_pictures_are_prepared_like_mnist(mnist, tmp_path):
    images, labels = mnist
    pictures = make_pictures(images[:3], labels[:3], tmp_path)
    assert len(pictures) == 3 * 8
    for path, _ in pictures:
        check_mnist_like(prepare_digit(path))


def test_an_mnist_digit_comes_back_as_it_was(mnist, tmp_path):
    """MNIST is already prepared, so preparing it again changes little."""
    images, _ = mnist
    scores = []
    for number, image in enumerate(images[:30]):
        path = tmp_path / f"mnist-{number}.png"
        Image.fromarray(image).save(path)
        scores.append(similarity(prepare_digit(path), image / 255))
    assert numpy.median(scores) > 0.99
    assert min(scores) > 0.85


def test_dark_ink_on_light_paper_is_inverted(tmp_path):
    ink = drawn_seven()
    dark_on_light = prepare_digit(save_grey(ink, tmp_path / "a.png", 250, 10))
    light_on_dark = prepare_digit(save_grey(ink, tmp_path / "b.png", 10, 250))
    check_mnist_like(dark_on_light)
    assert similarity(dark_on_light, light_on_dark) > 0.99
    # Light ink on black: the top bar of the 7 is light, the corners black.
    assert dark_on_light[:, :].max() == pytest.approx(1.0)
    assert dark_on_light[0, 0] == 0


def test_mid_grey_paper_with_dark_ink_is_inverted(tmp_path):
    ink = drawn_seven()
    reference = prepare_digit(save_grey(ink, tmp_path / "a.png", 255, 0))
    mid_grey = prepare_digit(save_grey(ink, tmp_path / "b.png", 140, 20))
    assert similarity(reference, mid_grey) > 0.99


def test_transparent_background_counts_as_paper(tmp_path):
    ink = drawn_seven()
    on_white = prepare_digit(save_grey(ink, tmp_path / "white.png"))
    rgba = numpy.zeros(ink.shape + (4,), dtype=numpy.uint8)  # hidden black
    rgba[..., 3] = numpy.rint(ink * 255)  # opaque black ink, clear paper
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    transparent = prepare_digit(tmp_path / "clear.png")
    check_mnist_like(transparent)
    assert similarity(on_white, transparent) > 0.99


def test_exif_orientation_is_applied(tmp_path):
    ink = drawn_seven()
    upright = prepare_digit(save_grey(ink, tmp_path / "upright.png"))
    picture = Image.open(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to view"
    picture.transpose(Image.Transpose.ROTATE_90).save(
        tmp_path / "sideways.jpg", exif=exif, quality=95
    )
    sideways = prepare_digit(tmp_path / "sideways.jpg")
    assert similarity(upright, sideways) > 0.99
    # Without the tag the same pixels give a different (turned) picture.
    picture.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "no-tag.jpg")
    assert similarity(upright, prepare_digit(tmp_path / "no-tag.jpg")) < 0.5


def test_uneven_noisy_paper_and_a_speck(tmp_path):
    ink = drawn_seven(240)
    clean = prepare_digit(save_grey(ink, tmp_path / "clean.png"))
    rows, columns = numpy.mgrid[0:240, 0:240] / 240
    paper = 250 - 90 * (rows + columns) / 2  # light falls off to one corner
    grey = paper * (1 - ink) + 30 * ink
    grey += numpy.random.default_rng(0).normal(0, 10, grey.shape)
    grey[225:228, 5:8] = 0  # a dust speck far from the digit
    Image.fromarray(numpy.clip(grey, 0, 255).astype(numpy.uint8)).save(
        tmp_path / "uneven.png"
    )
    uneven = prepare_digit(tmp_path / "uneven.png")
    check_mnist_like(uneven)
    assert similarity(clean, uneven) > 0.97


def test_small_digit_off_centre_on_a_wide_canvas(tmp_path):
    ink = drawn_seven(100)
    canvas = numpy.zeros((150, 600))
    canvas[40:140, 480:580] = ink
    reference = prepare_digit(save_grey(ink, tmp_path / "alone.png"))
    wide = prepare_digit(save_grey(canvas, tmp_path / "wide.png"))
    check_mnist_like(wide)
    assert similarity(reference, wide) > 0.98


def test_sixteen_bit_grey_picture(tmp_path):
    ink = drawn_seven()
    reference = prepare_digit(save_grey(ink, tmp_path / "eight.png"))
    grey = numpy.rint((1 - ink) * 65535).astype(numpy.uint16)
    Image.fromarray(grey).save(tmp_path / "sixteen.png")
    assert similarity(reference, prepare_digit(tmp_path / "sixteen.png")) > 0.99


# The network reads the prepared pictures correctly


@pytest.mark.parametrize("name", CASE_NAMES)
def test_case_pictures_are_recognised(model, cases, case_labels, name):
    best = top3(model, prepare_digit(cases / name))
    assert best[0][0] == case_labels[name], best


def test_generated_pictures_are_recognised(model, mnist, tmp_path):
    images, labels = mnist
    plain = model.predict(images.reshape(-1, 1, 28, 28) / 255, verbose=0)
    right = numpy.nonzero(plain.argmax(axis=1) == labels)[0]
    # Three digits the model reads correctly as they are: one each of 3, 5, 8
    # if possible (shapes that are easy to mistake), else the first three.
    chosen = [next((i for i in right if labels[i] == d), None) for d in (3, 5, 8)]
    chosen = [i for i in chosen if i is not None] or list(right[:3])
    pictures = make_pictures(images[chosen], labels[chosen], tmp_path)
    prepared = numpy.stack([prepare_digit(path) for path, _ in pictures])
    guesses = model.predict(prepared.reshape(-1, 1, 28, 28), verbose=0).argmax(1)
    wrong = [
        (Path(path).name, int(guess))
        for (path, digit), guess in zip(pictures, guesses, strict=True)
        if guess != digit
    ]
    assert wrong == []


# Bad pictures give one clear sentence naming the file


def expect_picture_error(path, *words):
    with pytest.raises(PictureError) as caught:
        prepare_digit(path)
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message
    for word in words:
        assert word in message
    return message


def test_missing_file(tmp_path):
    expect_picture_error(tmp_path / "no-such-picture.png", "Cannot find")


def test_folder_instead_of_a_file(tmp_path):
    expect_picture_error(tmp_path, "is a folder")


def test_text_file_renamed_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("This is a shopping list, not a picture.\n")
    expect_picture_error(path, "not a picture")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    expect_picture_error(path, "empty")


def test_single_colour_picture(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("RGB", (64, 64), (200, 200, 200)).save(path)
    expect_picture_error(path, "single colour")


def test_paper_without_ink(tmp_path):
    path = tmp_path / "paper.png"
    gradient = numpy.tile(numpy.linspace(150, 250, 200), (150, 1))
    Image.fromarray(gradient.astype(numpy.uint8)).save(path)
    expect_picture_error(path, "No digit found")


def test_truncated_png(tmp_path):
    whole = tmp_path / "whole.png"
    noise = numpy.random.default_rng(0).integers(0, 256, (200, 200), numpy.uint8)
    Image.fromarray(noise).save(whole)
    data = whole.read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    expect_picture_error(path, "damaged or cut short")


def test_huge_picture_is_refused_before_decoding(tmp_path):
    path = write_png(tmp_path / "huge.png", 20000, 20000)
    assert path.stat().st_size < 1_000_000  # small file, 400 million pixels
    expect_picture_error(path, "too many pixels")


def test_picture_over_our_own_pixel_limit(tmp_path):
    # 7000 x 6000 = 42 million pixels: under Pillow's own limit, over ours.
    path = write_png(tmp_path / "large.png", 7000, 6000)
    with Image.open(path) as image:
        assert image.size == (7000, 6000)  # Pillow alone would open it
    expect_picture_error(path, "7000 x 6000 pixels, too many")


# The figure for learners


def test_figure_shows_picture_and_input(cases, tmp_path):
    picture = cases / "digit-photo-like-rgb.png"
    out = tmp_path / "figure.png"
    assert save_input_figure(picture, prepare_digit(picture), out) == out
    with Image.open(out) as figure:
        assert figure.format == "PNG"
        width, height = figure.size
        assert width > height  # the two panels side by side
        pixels = numpy.asarray(figure.convert("L"))
    assert pixels.min() < 50 and pixels.max() > 200  # something was drawn


def test_figure_into_a_missing_folder(cases, tmp_path):
    picture = cases / "digit-black-on-white-28px.png"
    out = tmp_path / "no-such-folder" / "figure.png"
    with pytest.raises(PictureError) as caught:
        save_input_figure(picture, prepare_digit(picture), out)
    assert str(out) in str(caught.value)


def test_a_colour_space_that_cannot_be_converted_is_named(tmp_path):
    lab = tmp_path / "lab.tif"
    Image.new("RGB", (40, 40), "white").convert("LAB").save(lab)
    expect_picture_error(lab, "cannot convert")
