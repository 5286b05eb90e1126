"""Turn a user's picture of a digit into a 28 x 28 input the network can read.

The network was trained on MNIST, and MNIST digits were made in a fixed way:
light ink on a black background, the digit scaled so that its longer side is
20 pixels, then placed in a 28 x 28 field so that the centre of mass of the ink
sits at the centre. A photo or a drawing from a paint program looks nothing
like that: dark ink on white paper, off centre, in colour, with a shadow.
``prepare_digit`` repeats the MNIST recipe on such a picture, and
``save_input_figure`` shows the picture beside what the network will see, so a
learner can tell why a prediction went wrong.

Every problem with the picture (missing, not an image, too large, damaged,
blank) raises ``PictureError`` with a one-sentence message, never a traceback.
``mnist_large_cnn.py --predict`` uses this module.
"""

# Imports

import os
import warnings

import numpy
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

# Settings of the MNIST recipe and of the safety checks.

IMAGE_SIZE = 28  # MNIST pictures are 28 x 28 pixels ...
DIGIT_SIZE = 20  # ... and the digit's longer side is 20 pixels.
CENTRE = 14.0  # Row and column where MNIST puts the centre of mass of the ink.

MAX_PIXELS = 40_000_000  # Refuse larger pictures: decoding them eats memory.
WORK_SIZE = 1024  # Bigger pictures are shrunk to this first; 20 pixels is plenty.
BACKGROUND_SIZE = 64  # The paper is estimated on a copy this small, ...
BACKGROUND_WINDOW = 0.23  # ... with windows this share of its longer side.
FRAME_SHARE = 0.05  # The outer 5% of the picture is taken to be paper.
MIN_CONTRAST = 32  # Ink must stand out from the paper by this many grey levels.
SPECK_SHARE = 0.005  # Ink at the edges adding up to less than 0.5% is a speck.


class PictureError(Exception):
    """A picture that cannot be used, explained in one sentence for the user."""


# Reading the picture safely


def open_picture(path):
    """Open a picture file and return it as an RGB or grey Pillow image.

    The picture is turned upright as the camera recorded it (EXIF
    orientation), and anything transparent is laid on white paper, because a
    transparent background in a drawing program means "no ink here".
    Every way this can fail becomes a ``PictureError``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise PictureError(
            f"Cannot find the picture {path}; check the file name and folder."
        )
    if os.path.isdir(path):
        raise PictureError(
            f"{path} is a folder, not a picture; give the path of an image file."
        )
    if os.path.getsize(path) == 0:
        raise PictureError(
            f"{path} is empty (0 bytes); save or copy the picture again."
        )
    too_large = PictureError(
        f"{path} has too many pixels to open safely (the limit is "
        f"{MAX_PIXELS // 1_000_000} million); shrink it and try again."
    )
    # Pillow warns about, or refuses, pictures so large that decoding them
    # could exhaust memory (a "decompression bomb"). Here the warning is
    # turned into an error as well.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except UnidentifiedImageError:
            raise PictureError(
                f"{path} is not a picture this program can read; save it as "
                "PNG or JPEG and try again."
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise too_large from None
        except OSError as error:
            raise PictureError(
                f"Cannot read {path} ({error.strerror or error}); check that "
                "the file is readable."
            ) from None
        with image:
            # Image.open reads only the header, so the size is known before
            # any pixel is decoded.
            width, height = image.size
            if width == 0 or height == 0:
                raise PictureError(
                    f"{path} is {width} x {height} pixels, so it holds no "
                    "picture; save the picture again."
                )
            if width * height > MAX_PIXELS:
                raise PictureError(
                    f"{path} is {width} x {height} pixels, too many to open "
                    f"safely (the limit is {MAX_PIXELS // 1_000_000} million); "
                    "shrink it and try again."
                )
            try:
                image.load()
                image = ImageOps.exif_transpose(image)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise too_large from None
            except (OSError, SyntaxError, ValueError, EOFError) as error:
                raise PictureError(
                    f"{path} is damaged or cut short ({error}); save or "
                    "download the picture again."
                ) from None
    return on_white_paper(image)


def on_white_paper(image):
    """Lay a picture with transparency on white; leave others as they are."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La")
    if not has_alpha and "transparency" not in image.info:
        return image
    picture = image.convert("RGBA")
    paper = Image.new("RGBA", picture.size, (255, 255, 255, 255))
    return Image.alpha_composite(paper, picture).convert("RGB")


def with_colours_checked(convert, image, path):
    """Apply a colour conversion; a colour space Pillow cannot convert (a
    CIELab TIFF, say) becomes a PictureError instead of a traceback."""
    try:
        return convert(image)
    except (ValueError, OSError) as error:
        raise PictureError(
            f"{os.fspath(path)} uses colours this program cannot convert "
            f"({error}); save it as an ordinary PNG or JPEG."
        ) from None


def grey_levels(image):
    """Return the picture as a float array of grey levels, 0 (black) to 255.

    Most pictures have 8 bits per channel and Pillow's "L" conversion does
    the job. 16-bit and floating-point greys are scaled down by hand, since
    Pillow would clip them.
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        grey = numpy.asarray(image, dtype=numpy.float64)
        top = grey.max()
        if top > 255:
            grey = grey * (255 / 65535)
        elif image.mode == "F" and top <= 1:
            grey = grey * 255
        return numpy.clip(grey, 0, 255)
    return numpy.asarray(image.convert("L"), dtype=numpy.float64)


# Finding the ink


def outer_frame(grey):
    """Return the pixels of the outer frame (5% of the picture on each side)."""
    height, width = grey.shape
    band = max(1, round(min(height, width) * FRAME_SHARE))
    return numpy.concatenate(
        [
            grey[:band].ravel(),
            grey[-band:].ravel(),
            grey[band:-band, :band].ravel(),
            grey[band:-band, -band:].ravel(),
        ]
    )


def light_ink_on_dark(grey, path="the picture"):
    """Return the grey levels turned, if needed, into light ink on dark paper.

    The paper level is the median of the outer frame, where a digit rarely
    is. Paper that is clearly light (the usual case) or clearly dark decides
    at once. For mid-grey paper we look at which way the strongest pixels
    differ from the paper: if the darkest pixels are further from it than
    the lightest, the ink is dark and the picture is inverted.
    """
    if grey.min() == grey.max():
        raise PictureError(
            f"{path} is a single colour, so there is no digit in it; choose a "
            "picture of one handwritten digit."
        )
    paper = numpy.median(outer_frame(grey))
    if paper >= 160:
        dark_ink = True
    elif paper <= 96:
        dark_ink = False
    else:
        darkest, lightest = numpy.percentile(grey, [0.5, 99.5])
        dark_ink = paper - darkest > lightest - paper
    return 255 - grey if dark_ink else grey


def upper_level(values, spreads):
    """Return the median of values plus a number of spreads above it.

    The spread is the median distance from the median, scaled by 1.4826 so
    that it equals the standard deviation for bell-shaped noise. Unlike the
    mean and standard deviation, neither is thrown off by a few ink pixels.
    """
    middle = numpy.median(values)
    spread = 1.4826 * numpy.median(numpy.abs(values - middle))
    return middle + spreads * spread


def paper_estimate(ink):
    """Estimate the paper under the ink, for light ink on dark paper.

    Uneven light (a gradient, a shadow) makes the paper brighter in some
    places than in others, so one paper level for the whole picture is not
    enough. On a small copy of the picture, a minimum filter followed by a
    maximum filter of the same size (an "opening") wipes out every stroke
    narrower than the window and keeps the slow changes of the paper. The
    estimate is then enlarged back to full size.

    A stroke wider than the window (a bold digit filling a tightly cropped
    picture) would survive and be taken for paper, so the estimate is never
    allowed above what the outer frame shows the paper to be: its typical
    level plus three times its spread, which leaves room for a gradient.
    """
    height, width = ink.shape
    scale = BACKGROUND_SIZE / max(height, width)
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = Image.fromarray(ink.astype(numpy.uint8)).resize(
        small_size, Image.Resampling.BOX
    )
    window = 2 * round(BACKGROUND_SIZE * BACKGROUND_WINDOW / 2) + 1  # odd
    opened = small.filter(ImageFilter.MinFilter(window))
    opened = opened.filter(ImageFilter.MaxFilter(window))
    paper = numpy.asarray(
        opened.resize((width, height), Image.Resampling.BILINEAR),
        dtype=numpy.float64,
    )
    return numpy.minimum(paper, upper_level(outer_frame(ink), 3))


def otsu_threshold(values):
    """Return the grey level that best splits values (0-255) into two groups.

    Otsu's rule: try every level, and keep the one for which the two groups
    (below and above it) are most different in mean, weighted by their
    sizes ("between-class variance").
    """
    counts = numpy.bincount(
        numpy.clip(values, 0, 255).astype(numpy.uint8).ravel(), minlength=256
    ).astype(numpy.float64)
    levels = numpy.arange(256)
    below = numpy.cumsum(counts)  # pixels at or below each level
    above = below[-1] - below
    sum_below = numpy.cumsum(counts * levels)
    sum_above = sum_below[-1] - sum_below
    with numpy.errstate(divide="ignore", invalid="ignore"):
        mean_below = sum_below / below
        mean_above = sum_above / above
        between = below * above * (mean_below - mean_above) ** 2
    return int(numpy.argmax(numpy.nan_to_num(between)))


def ink_box(mask):
    """Return (top, bottom, left, right) of the ink, ignoring small specks.

    Rows and columns are dropped from each side while the ink they hold adds
    up to less than 0.5% of all ink: a dust speck far from the digit goes,
    the digit itself stays. bottom and right are one past the last ink pixel.
    """

    def span(counts):
        share = numpy.cumsum(counts) / counts.sum()
        first = int(numpy.searchsorted(share, SPECK_SHARE, side="right"))
        last = int(numpy.searchsorted(share, 1 - SPECK_SHARE, side="left"))
        return first, min(last, len(counts) - 1) + 1

    top, bottom = span(mask.sum(axis=1))
    left, right = span(mask.sum(axis=0))
    return top, bottom, left, right


def find_ink(grey, path="the picture"):
    """Return light ink on a black background (0) and a mask of the ink.

    The paper estimate is subtracted, a light blur calms camera noise, and
    Otsu's rule on the result separates ink from paper.
    """
    ink = light_ink_on_dark(grey, path)
    lifted = numpy.clip(ink - paper_estimate(ink), 0, 255)
    radius = max(min(ink.shape) / 200, 0.5)
    smooth = numpy.asarray(
        Image.fromarray(lifted.astype(numpy.uint8)).filter(
            ImageFilter.GaussianBlur(radius)
        ),
        dtype=numpy.float64,
    )
    if numpy.percentile(smooth, 99.9) < MIN_CONTRAST:
        raise PictureError(
            f"No digit found in {path}: nothing stands out from the paper; use "
            "a picture with darker ink or more contrast."
        )
    threshold = max(otsu_threshold(smooth), MIN_CONTRAST // 2)
    mask = smooth > threshold
    # What is left of the paper after the subtraction is noise; everything
    # up to its typical level plus 2.5 spreads becomes black.
    paper = lifted[~mask]
    if paper.size == 0:
        return lifted, mask
    floor = min(upper_level(paper, 2.5), 0.8 * threshold)
    return numpy.clip(lifted - floor, 0, None), mask


# The MNIST recipe


def prepare_digit(path):
    """Return the digit in a picture as MNIST would have drawn it.

    The result is a float32 array of shape (28, 28) with values from 0 to 1:
    light ink on a black background, the digit's longer side 20 pixels,
    its centre of mass at the centre (row 14, column 14). Feed it to the
    channels-first network as ``prepared.reshape(1, 1, 28, 28)``.
    Raises ``PictureError`` if the picture cannot be used.
    """
    image = open_picture(path)
    if max(image.size) > WORK_SIZE:
        image = image.copy()
        image.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    grey = with_colours_checked(grey_levels, image, path)
    ink, mask = find_ink(grey, os.fspath(path))

    # Crop to the ink and scale the longer side to 20 pixels.
    top, bottom, left, right = ink_box(mask)
    crop = ink[top:bottom, left:right]
    height, width = crop.shape
    scale = DIGIT_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = Image.fromarray(crop.astype(numpy.float32)).resize(
        size, Image.Resampling.LANCZOS
    )
    digit = numpy.clip(numpy.asarray(digit, dtype=numpy.float64), 0, None)

    # Stretch the contrast: the strong ink becomes 255, as in MNIST.
    strong = numpy.percentile(digit[digit > 0], 90) if digit.any() else 0
    if strong <= 0:
        raise PictureError(
            f"No digit found in {os.fspath(path)}: the ink is too faint; use a "
            "picture with darker ink or more contrast."
        )
    digit = numpy.clip(digit * (255 / strong), 0, 255)

    # Put the centre of mass of the ink at the centre of a 28 x 28 field.
    rows, columns = numpy.indices(digit.shape)
    total = digit.sum()
    centre_row = (rows * digit).sum() / total
    centre_column = (columns * digit).sum() / total
    height, width = digit.shape
    top = int(numpy.clip(round(CENTRE - centre_row), 0, IMAGE_SIZE - height))
    left = int(numpy.clip(round(CENTRE - centre_column), 0, IMAGE_SIZE - width))
    field = numpy.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=numpy.float32)
    field[top : top + height, left : left + width] = digit
    return field / numpy.float32(255)


def save_input_figure(original_path, prepared, out_path):
    """Save a PNG of the user's picture beside the 28 x 28 network input.

    Each pixel of the small input is drawn as a sharp square (nearest
    neighbour), so the learner sees exactly what the network is given.
    Uses Matplotlib's Agg canvas directly, so no window opens and the
    global Matplotlib backend is left alone. Returns ``out_path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    picture = with_colours_checked(
        lambda image: image.convert("RGB"), open_picture(original_path), original_path
    )
    figure = Figure(figsize=(8, 4))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    left.imshow(numpy.asarray(picture), interpolation="nearest")
    left.set_title("your picture")
    right.imshow(
        numpy.asarray(prepared).reshape(IMAGE_SIZE, IMAGE_SIZE),
        cmap="gray",
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    right.set_title("what the network sees (28 x 28)")
    for axes in (left, right):
        axes.set_xticks([])
        axes.set_yticks([])
    figure.tight_layout()
    try:
        figure.savefig(out_path, format="png")
    except OSError as error:
        raise PictureError(
            f"Cannot write the figure {os.fspath(out_path)} "
            f"({error.strerror or error}); choose a folder you can write to."
        ) from None
    return out_path
