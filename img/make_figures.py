"""Draw every figure of the walkthrough in notes/ from a finished run.

    python img/make_figures.py --run output --data PATH/mnist.npz

``--run`` is a folder written by ``mnist_large_cnn.py`` (it holds
``model.keras`` and ``history.csv``); ``--data`` is the MNIST the run used.
With ``--picture PNG`` the script also runs ``mnist_large_cnn.py --predict``
on that picture and keeps the figure of its prepared input. The figures go
to ``--out`` (default: this folder). The same run gives the same bytes each
time: nothing random is drawn, and the PNG files drawn here carry no software
stamp (``prepared-input.png`` is the script's own figure, copied as it is).
"""

# Imports

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window

import numpy
from matplotlib import pyplot
from matplotlib.patches import Circle, FancyArrowPatch, Rectangle

# As in mnist_large_cnn.py: quiet TensorFlow's C++ start-up lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mnist_large_cnn as cnn

DPI = 100
SEED = 7
PICTURE_FIGURE = "prepared-input.png"
FEATURE_DIGIT = 0  # index of the test digit whose feature maps are drawn
MISCLASSIFIED_SHOWN = 24

pyplot.rcParams.update(
    {
        "font.size": 11,
        "axes.titlesize": 11,
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
    }
)


def save(figure, folder, name):
    """Write a PNG without metadata that would change from one run to the next."""
    path = folder / name
    figure.savefig(path, dpi=DPI, metadata={"Software": None})
    pyplot.close(figure)
    print(f"wrote {path}")
    return path


def no_ticks(axes):
    axes.set_xticks([])
    axes.set_yticks([])


# The data


def sample_digits(X_train, y_train, folder):
    """The first 20 training images, as stored, with their labels."""
    figure, grid = pyplot.subplots(2, 10, figsize=(9, 2.9))
    for index, axes in enumerate(grid.flat):
        axes.imshow(X_train[index], cmap="gray", vmin=0, vmax=255)
        axes.set_title(f"label {y_train[index]}", fontsize=10)
        no_ticks(axes)
    figure.suptitle("The first 20 training images of MNIST (28 x 28 pixels each)")
    figure.tight_layout(h_pad=1.2)
    return save(figure, folder, "sample-digits.png")


# The model


def neuron(folder):
    """One neuron as a picture and an equation, beside sigmoid and ReLU."""
    figure = pyplot.figure(figsize=(10, 3.4))
    sketch = figure.add_axes([0.0, 0.0, 0.4, 1.0])
    sketch.set_xlim(0, 10)
    sketch.set_ylim(0, 7)
    sketch.axis("off")
    for row, y in enumerate((5.5, 3.5, 1.5), start=1):
        sketch.add_patch(Circle((1.2, y), 0.55, fc="#dde8f5"))
        sketch.text(1.2, y, f"$x_{row}$", ha="center", va="center", fontsize=13)
        sketch.add_patch(
            FancyArrowPatch((1.8, y), (5.0, 3.5), arrowstyle="-|>", mutation_scale=14)
        )
        sketch.text(3.0, (y + 3.5) / 2 + 0.35, f"$w_{row}$", fontsize=12)
    sketch.add_patch(Circle((5.9, 3.5), 0.9, fc="#f5e6c8"))
    sketch.text(5.9, 3.5, "sum\n+ b", ha="center", va="center", fontsize=11)
    sketch.add_patch(
        FancyArrowPatch((6.8, 3.5), (8.3, 3.5), arrowstyle="-|>", mutation_scale=14)
    )
    sketch.text(7.1, 3.8, "$f$", fontsize=13)
    sketch.text(8.4, 3.5, "output", va="center", fontsize=11)
    sketch.text(
        5.0,
        0.2,
        "$\\mathrm{output} = f\\,(w_1 x_1 + w_2 x_2 + w_3 x_3 + b)$",
        ha="center",
        fontsize=12,
    )
    z = numpy.linspace(-6, 6, 241)
    curves = (
        ("sigmoid: $1 / (1 + e^{-z})$", 1 / (1 + numpy.exp(-z))),
        ("ReLU: $\\max(0, z)$", numpy.maximum(0, z)),
    )
    for place, (title, values) in zip((0.47, 0.76), curves, strict=True):
        axes = figure.add_axes([place, 0.17, 0.21, 0.68])
        axes.plot(z, values, color="#1f5fa8", linewidth=2)
        axes.axhline(0, color="grey", linewidth=0.8)
        axes.axvline(0, color="grey", linewidth=0.8)
        axes.set_title(title)
        axes.set_xlabel("z, the weighted sum plus bias")
        axes.grid(alpha=0.3)
    return save(figure, folder, "neuron.png")


def layer_label(layer):
    kind = type(layer).__name__
    if kind == "Conv2D":
        size = "x".join(map(str, layer.kernel_size))
        return f"Conv2D\n{layer.filters} filters {size}, ReLU"
    if kind == "MaxPooling2D":
        return "MaxPooling2D\n" + "x".join(map(str, layer.pool_size))
    if kind == "Dropout":
        return f"Dropout\nrate {layer.rate}"
    if kind == "Dense":
        activation = layer.activation.__name__.replace("relu", "ReLU")
        return f"Dense\n{layer.units}, {activation}"
    return kind


def architecture(model, folder):
    """The layers as boxes in two rows, with the shape after each one."""
    boxes = [("Input\none grey image", tuple(model.input_shape[1:]), 0)]
    for layer in model.layers:
        shape = tuple(layer.output.shape[1:])
        boxes.append((layer_label(layer), shape, layer.count_params()))
    figure = pyplot.figure(figsize=(10, 4.6))
    axes = figure.add_axes([0, 0, 1, 1])
    axes.set_xlim(0, 10)
    axes.set_ylim(0, 4.6)
    axes.axis("off")
    width, height = 1.7, 1.45
    places = [(0.15 + 2.0 * i, 2.75) for i in range(5)]
    places += [(0.15 + 2.0 * (4 - i), 0.45) for i in range(5)]
    for index, ((label, shape, params), (x, y)) in enumerate(
        zip(boxes, places, strict=True)
    ):
        colour = "#dde8f5" if "Conv" in label or "Input" in label else "#eeeeee"
        if "Dense" in label:
            colour = "#f5e6c8"
        axes.add_patch(Rectangle((x, y), width, height, fc=colour, ec="#333333"))
        axes.text(x + width / 2, y + height - 0.12, label, ha="center", va="top")
        axes.text(
            x + width / 2,
            y + 0.42,
            str(shape).replace(",)", ")"),
            ha="center",
            fontsize=11,
            fontweight="bold",
        )
        axes.text(x + width / 2, y + 0.12, f"{params:,} parameters", ha="center")
        if index + 1 < len(places):
            nx, ny = places[index + 1]
            if ny == y:
                start = (x + width, y + height / 2) if nx > x else (x, y + height / 2)
                end = (nx, ny + height / 2) if nx > x else (nx + width, ny + height / 2)
            else:
                start, end = (x + width / 2, y), (nx + width / 2, ny + height)
            axes.add_patch(
                FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14)
            )
    total = model.count_params()
    axes.text(
        5,
        4.4,
        f"Shape after each layer, (channels, height, width); {total:,} parameters",
        ha="center",
        fontsize=12,
    )
    return save(figure, folder, "architecture.png")


def max_pooling(folder):
    """A worked 2 x 2 max-pooling example on a 4 x 4 grid of numbers."""
    grid = numpy.array([[1, 3, 0, 2], [4, 2, 1, 0], [0, 1, 5, 6], [2, 0, 7, 1]])
    colours = ["#dde8f5", "#f5e6c8", "#e3f0d8", "#f3d9e3"]
    figure = pyplot.figure(figsize=(7, 3.2))
    axes = figure.add_axes([0, 0, 1, 1])
    axes.set_xlim(0, 10)
    axes.set_ylim(-0.6, 4.6)
    axes.set_aspect("equal")
    axes.axis("off")
    for row in range(4):
        for column in range(4):
            block = 2 * (row // 2) + column // 2
            x, y = 0.3 + column, 3.3 - row
            value = grid[row, column]
            top, left = row - row % 2, column - column % 2
            biggest = value == grid[top : top + 2, left : left + 2].max()
            axes.add_patch(Rectangle((x, y), 1, 1, fc=colours[block], ec="#333333"))
            axes.text(
                x + 0.5,
                y + 0.5,
                str(value),
                ha="center",
                va="center",
                fontsize=15,
                fontweight="bold" if biggest else "normal",
            )
    pooled = grid.reshape(2, 2, 2, 2).max(axis=(1, 3))
    for row in range(2):
        for column in range(2):
            x, y = 6.8 + column, 2.3 - row
            axes.add_patch(
                Rectangle((x, y), 1, 1, fc=colours[2 * row + column], ec="#333333")
            )
            axes.text(
                x + 0.5,
                y + 0.5,
                str(pooled[row, column]),
                ha="center",
                va="center",
                fontsize=15,
                fontweight="bold",
            )
    axes.add_patch(
        FancyArrowPatch((4.6, 2.3), (6.5, 2.3), arrowstyle="-|>", mutation_scale=18)
    )
    axes.text(5.55, 2.55, "largest of\neach 2 x 2", ha="center", va="bottom")
    axes.text(2.3, -0.45, "4 x 4 input", ha="center", fontsize=12)
    axes.text(7.8, 0.85, "2 x 2 output", ha="center", fontsize=12)
    return save(figure, folder, "max-pooling.png")


def filters(model, folder):
    """The 30 first-layer kernels, 5 x 5 weights each, on one shared scale."""
    kernel = model.layers[0].kernel.numpy()  # (5, 5, 1, 30)
    limit = float(numpy.abs(kernel).max())
    figure, grid = pyplot.subplots(3, 10, figsize=(9, 3.3))
    for index, axes in enumerate(grid.flat):
        image = axes.imshow(
            kernel[:, :, 0, index], cmap="RdBu_r", vmin=-limit, vmax=limit
        )
        axes.set_title(str(index), fontsize=9)
        no_ticks(axes)
    figure.suptitle(
        "The 30 filters of the first Conv2D layer: 5 x 5 weights each "
        "(red positive, blue negative)"
    )
    figure.tight_layout(rect=(0, 0, 0.92, 1))
    bar = figure.add_axes([0.93, 0.12, 0.015, 0.72])
    figure.colorbar(image, cax=bar)
    return save(figure, folder, "filters.png")


def feature_maps(model, X_test, y_test, folder):
    """One test digit, and what each convolution and pooling layer makes of it."""
    digit = X_test[FEATURE_DIGIT : FEATURE_DIGIT + 1]
    outputs, x = [], digit
    for layer in model.layers[:4]:
        x = layer(x)
        outputs.append((layer, numpy.asarray(x)[0]))
    columns = 15
    blocks = [("input", digit[0])] + [(layer.name, maps) for layer, maps in outputs]
    rows = sum(-(-maps.shape[0] // columns) for _, maps in blocks)
    figure = pyplot.figure(figsize=(10, 0.72 * rows + 0.6))
    grid = figure.add_gridspec(
        rows, columns, left=0.16, right=0.99, top=0.93, bottom=0.01, hspace=0.12
    )
    label = int(numpy.argmax(y_test[FEATURE_DIGIT]))
    figure.suptitle(
        f"Test image {FEATURE_DIGIT} (a {label}) on its way through the network: "
        "one square per channel, white = large"
    )
    row = 0
    for name, maps in blocks:
        top = float(maps.max()) or 1.0
        heights = []
        for channel in range(maps.shape[0]):
            axes = figure.add_subplot(grid[row + channel // columns, channel % columns])
            axes.imshow(maps[channel], cmap="gray", vmin=0, vmax=top)
            no_ticks(axes)
            heights += [axes.get_position().y0, axes.get_position().y1]
        shape = " x ".join(map(str, maps.shape))
        middle = (min(heights) + max(heights)) / 2
        figure.text(0.01, middle, f"{name}\n{shape}", va="center")
        row += -(-maps.shape[0] // columns)
    return save(figure, folder, "feature-maps.png")


# The results


def read_history(path):
    rows = cnn.read_history(path)  # the script's own reader of history.csv
    epochs = [int(row["epoch"]) + 1 for row in rows]
    columns = {
        key: [float(row[key]) for row in rows]
        for key in ("loss", "val_loss", "accuracy", "val_accuracy")
    }
    return epochs, columns


def learning_curves(history_file, folder):
    """Loss and accuracy per epoch, on the training and the test images."""
    epochs, history = read_history(history_file)
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 3.8))
    for axes, key, name in ((left, "loss", "loss"), (right, "accuracy", "accuracy")):
        axes.plot(epochs, history[key], "o-", label="training images (during epoch)")
        axes.plot(
            epochs, history[f"val_{key}"], "s--", label="test images (end of epoch)"
        )
        axes.set_xlabel("epoch")
        axes.set_title(name)
        axes.set_xticks(epochs)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    return save(figure, folder, "learning-curves.png")


def confusion_matrix(true, predicted, folder):
    """How often each true digit (row) was read as each digit (column)."""
    counts = numpy.zeros((10, 10), dtype=int)
    numpy.add.at(counts, (true, predicted), 1)
    mistakes = counts.copy()
    numpy.fill_diagonal(mistakes, 0)
    figure, axes = pyplot.subplots(figsize=(6.4, 5.6))
    axes.imshow(mistakes, cmap="Reds", vmin=0, vmax=max(1, mistakes.max()))
    for row in range(10):
        for column in range(10):
            value = counts[row, column]
            if value == 0:
                continue
            dark = row != column and value > 0.6 * mistakes.max()
            axes.text(
                column,
                row,
                str(value),
                ha="center",
                va="center",
                fontsize=9 if row == column else 11,
                fontweight="bold" if row == column else "normal",
                color="white" if dark else "black",
            )
    axes.set_xticks(range(10))
    axes.set_yticks(range(10))
    axes.set_xlabel("digit the network said")
    axes.set_ylabel("true digit")
    wrong = int(mistakes.sum())
    axes.set_title(f"Test images: {len(true):,}, of which {wrong} misread (red)")
    figure.tight_layout()
    save(figure, folder, "confusion-matrix.png")
    return counts


def misclassified(X_test, true, predicted, probabilities, folder):
    """The first misread test images, with what they are and what was said."""
    wrong = numpy.flatnonzero(true != predicted)[:MISCLASSIFIED_SHOWN]
    figure, grid = pyplot.subplots(3, 8, figsize=(10, 5.0))
    for axes in grid.flat:
        axes.axis("off")
    for axes, index in zip(grid.flat, wrong, strict=False):
        axes.imshow(X_test[index, 0], cmap="gray", vmin=0, vmax=1)
        said = predicted[index]
        chance = probabilities[index, said]
        axes.set_title(
            f"#{index}: a {true[index]}\nread as {said} ({chance:.2f})", fontsize=9
        )
    figure.suptitle(
        "The first misread test images: test index, true digit, the network's "
        "answer (its probability)",
        fontsize=10,
    )
    figure.tight_layout(h_pad=0.8)
    return save(figure, folder, "misclassified.png")


def prepared_input(picture, model_file, folder):
    """Run ``mnist_large_cnn.py --predict --show-input`` and keep its figure.

    The script runs in a process of its own, exactly as a user would run it,
    so its figure is not touched by the settings made here.
    """
    with tempfile.TemporaryDirectory() as shown:
        command = [
            sys.executable,
            str(ROOT / "mnist_large_cnn.py"),
            "--predict",
            str(picture),
            "--model",
            str(model_file),
            "--show-input",
            shown,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        print(result.stdout, end="")
        if result.returncode != 0:
            raise SystemExit(f"--predict failed on {picture}:\n{result.stderr}")
        made = Path(shown) / f"{Path(picture).stem}-input.png"
        target = folder / PICTURE_FIGURE
        shutil.copyfile(made, target)
    print(f"wrote {target}")
    return target


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Draw the figures of notes/ from a finished run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--run",
        metavar="DIR",
        required=True,
        help="a finished run: the folder holding model.keras and history.csv",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        required=True,
        help="the MNIST the run used (.npz or folder of IDX files)",
    )
    parser.add_argument(
        "--picture",
        metavar="PNG",
        help="a picture of a digit for prepared-input.png (skipped if not given)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=str(Path(__file__).resolve().parent),
        help="folder for the PNG files",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        cnn.setup(SEED)
        (X_train, y_train), (X_test, y_test), _ = cnn.load_mnist(args.data)
    except cnn.UserError as error:
        raise SystemExit(f"error: {error}") from None
    model = keras.saving.load_model(run / cnn.MODEL_FILE, safe_mode=True)

    sample_digits(X_train, y_train, out)
    _, _, X_test, y_test, _ = cnn.prepare_data(X_train, y_train, X_test, y_test)
    neuron(out)
    architecture(model, out)
    max_pooling(out)
    filters(model, out)
    feature_maps(model, X_test, y_test, out)
    learning_curves(run / cnn.HISTORY_FILE, out)

    probabilities = model.predict(X_test, batch_size=1000, verbose=0)
    true, predicted = y_test.argmax(axis=1), probabilities.argmax(axis=1)
    counts = confusion_matrix(true, predicted, out)
    misclassified(X_test, true, predicted, probabilities, out)
    if args.picture:
        prepared_input(args.picture, run / cnn.MODEL_FILE, out)

    # A few numbers that the notes quote from the figures.
    wrong = int((true != predicted).sum())
    print(f"misread test images: {wrong} of {len(true)}")
    per_digit = counts.sum(axis=1) - numpy.diag(counts)
    print("  by true digit: " + ", ".join(f"{d}: {n}" for d, n in enumerate(per_digit)))
    mistakes = [
        (int(counts[t, p]), int(t), int(p))
        for t in range(10)
        for p in range(10)
        if t != p and counts[t, p]
    ]
    for count, t, p in sorted(mistakes, key=lambda m: (-m[0], m[1], m[2]))[:5]:
        print(f"  true {t} read as {p}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
