"""Make harder test pictures from real MNIST digits.

Each MNIST digit (light ink on black, 28 x 28) is redrawn the way users'
pictures tend to look: dark ink on white, off centre, in colour, with a
transparent background, on a wide canvas, on uneven noisy paper, with a thick
dark border, rotated with an EXIF tag, or as a palette image. The true digit
goes with each picture, so ``prepare_digit`` and the network can be checked.

Run ``python make_test_digits.py [FOLDER]`` to write a set made from the first
few MNIST test digits; MNIST is read from the ``.npz`` named by
``MNIST_DATA`` and never copied.
"""

import os
import sys
import tempfile
from pathlib import Path

import numpy
from PIL import Image

MNIST_FILE = os.environ.get("MNIST_DATA", "mnist.npz")


def enlarge(image, height):
    """Return the digit's ink (0 to 1) enlarged smoothly to the given height."""
    ink = Image.fromarray(numpy.asarray(image, dtype=numpy.uint8))
    ink = ink.resize((height, height), Image.Resampling.BICUBIC)
    return numpy.clip(numpy.asarray(ink, dtype=numpy.float64) / 255, 0, 1)


def place(ink, canvas_size, top, left):
    """Return a canvas (height, width) of zeros with the ink pasted at top, left."""
    canvas = numpy.zeros(canvas_size)
    height, width = ink.shape
    canvas[top : top + height, left : left + width] = ink
    return canvas


def paint(ink, paper, colour):
    """Mix paper and ink colours by the ink amount (0 paper, 1 ink), as uint8."""
    paper = numpy.asarray(paper, dtype=numpy.float64)
    colour = numpy.asarray(colour, dtype=numpy.float64)
    if paper.ndim > ink.ndim:  # colour paper and ink: one amount per pixel
        ink = ink[..., numpy.newaxis]
    mixed = paper * (1 - ink) + colour * ink
    return numpy.clip(numpy.rint(mixed), 0, 255).astype(numpy.uint8)


def make_pictures(images, labels, folder):
    """Write eight kinds of hard picture for each digit; return (path, digit).

    images are MNIST digits (uint8 arrays, 28 x 28, light ink on black) and
    labels their true digits. The files go into folder, which is created.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    random = numpy.random.default_rng(0)
    pictures = []
    for number, (image, label) in enumerate(zip(images, labels, strict=True)):
        digit = int(label)
        kinds = []  # (end of the file name, picture, options for saving)

        # 1. Dark ink on white, 200 x 200, off centre towards the top left.
        ink = place(enlarge(image, 90), (200, 200), 15, 20)
        kinds.append(("white-offcentre.png", Image.fromarray(paint(ink, 255, 0)), {}))

        # 2. Blue ink on yellowish paper, in colour.
        ink = place(enlarge(image, 110), (160, 180), 30, 50)
        paper = numpy.empty((160, 180, 3))
        paper[:] = (250, 238, 185)
        picture = Image.fromarray(paint(ink, paper, (25, 40, 170)))
        kinds.append(("blue-on-yellow.png", picture, {}))

        # 3. Opaque dark ink on a transparent background whose hidden colour
        # is black: dropping the alpha channel would show black on black.
        ink = place(enlarge(image, 100), (128, 128), 20, 10)
        rgba = numpy.zeros((128, 128, 4), dtype=numpy.uint8)
        rgba[..., :3] = 20
        rgba[..., 3] = numpy.rint(ink * 255)
        kinds.append(("transparent.png", Image.fromarray(rgba), {}))

        # 4. A wide canvas, 300 x 120, with the digit near the right edge.
        ink = place(enlarge(image, 110), (120, 300), 5, 185)
        kinds.append(("wide-right.png", Image.fromarray(paint(ink, 225, 30)), {}))

        # 5. Uneven paper: light from the top left, a soft shadow at the
        # bottom right, camera noise; the ink is a dark blue-grey.
        rows, columns = numpy.mgrid[0:240, 0:240] / 240
        light = 250 - 70 * (rows + columns) / 2
        light -= 50 * numpy.exp(-((rows - 0.9) ** 2 + (columns - 0.8) ** 2) / 0.05)
        paper = numpy.repeat(light[..., numpy.newaxis], 3, axis=2)
        ink = place(enlarge(image, 150), (240, 240), 50, 40)
        picture = paint(ink, paper, (40, 45, 60)).astype(numpy.float64)
        picture += random.normal(0, 10, picture.shape)
        picture = numpy.clip(numpy.rint(picture), 0, 255).astype(numpy.uint8)
        kinds.append(("uneven-noisy.png", Image.fromarray(picture), {}))

        # 6. Light ink on dark grey, 56 x 56, with a thick dark border.
        ink = place(enlarge(image, 36), (56, 56), 10, 10)
        kinds.append(("dark-border-56.png", Image.fromarray(paint(ink, 35, 235)), {}))

        # 7. A camera photo stored on its side, with the EXIF tag that tells
        # viewers to turn it upright (orientation 6: rotate 90 degrees
        # clockwise to view).
        ink = place(enlarge(image, 120), (160, 160), 20, 20)
        upright = Image.fromarray(paint(ink, 240, 25)).convert("RGB")
        stored = upright.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6  # the EXIF orientation tag
        kinds.append(("exif-rotated.jpg", stored, {"exif": exif, "quality": 90}))

        # 8. A palette (GIF-like) picture whose background colour is marked
        # transparent; that hidden colour is black.
        ink = place(enlarge(image, 60), (80, 80), 10, 10)
        levels = numpy.where(ink > 0.5, 1, 0).astype(numpy.uint8)
        palette = Image.new("P", (80, 80))
        palette.putpalette([0, 0, 0, 30, 30, 90] + [0, 0, 0] * 254)
        palette.putdata(levels.ravel().tolist())
        kinds.append(("palette-transparent.png", palette, {"transparency": 0}))

        for kind, picture, options in kinds:
            path = folder / f"{number:02d}-digit{digit}-{kind}"
            picture.save(path, **options)
            pictures.append((str(path), digit))
    return pictures


def main(argv=None):
    """Write pictures of the first ten MNIST test digits into a folder."""
    argv = sys.argv[1:] if argv is None else argv
    folder = argv[0] if argv else tempfile.mkdtemp(prefix="test-digits-")
    with numpy.load(MNIST_FILE, allow_pickle=False) as mnist:
        images, labels = mnist["x_test"][:10], mnist["y_test"][:10]
    for path, digit in make_pictures(images, labels, folder):
        print(f"{digit}  {path}")


if __name__ == "__main__":
    main()
