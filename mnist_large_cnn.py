"""The 2017 "large CNN" for MNIST, ported to Keras 3.

A convolutional network that reads 28 x 28 handwritten digits and says
which of 0-9 each one is. The layers, optimiser, loss, epochs, batch size,
seed and channels-first image layout are those of the widely read 2017 Keras 2
tutorial; the script prints the same closing line, ``Large CNN Error: X.XX%``.

Run it with ``python mnist_large_cnn.py`` (``--help`` lists the options).
The walkthrough in ``notes/`` explains every line.

Differences from the 2017 script, each explained where it happens:

* ``K.set_image_dim_ordering('th')`` is gone from Keras; the channels-first
  layout is now chosen with ``keras.config.set_image_data_format``.
* ``np_utils.to_categorical`` is now ``keras.utils.to_categorical``, and the
  layers are imported from ``keras.layers`` rather than
  ``keras.layers.convolutional``.
* ``numpy.random.seed(7)`` alone no longer makes a run repeat, so the script
  also seeds Keras and asks the backend for deterministic operations.
* Some CPU builds of TensorFlow cannot train channels-first convolutions.
  The script detects this and compiles the training step with XLA instead.
* The input shape is given by ``keras.Input`` instead of an ``input_shape``
  argument on the first layer, as Keras 3 recommends.
* MNIST can also be read from a local file or folder (``--data`` or the
  ``MNIST_DATA`` environment variable), and every input file is checked.
* The script shuffles the training images itself, in an order fixed by the
  seed and the epoch, instead of leaving it to ``fit()``. Together with
  Keras's ``BackupAndRestore`` this lets an interrupted run resume and end
  exactly as an uninterrupted one would.
* The run writes the trained model, the per-epoch history and a summary,
  and ``--predict`` reads your own pictures of digits with the result.
"""

# Imports

import argparse
import csv
import gzip
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

# TensorFlow prints many start-up lines from C++ that mean nothing to a
# learner (CUDA not found, CPU instructions). This must be set before the
# backend is imported; an explicit setting by the user wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy
from keras.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from keras.models import Sequential
from keras.utils import to_categorical

# Settings of the 2017 run. The command-line options default to these.

SEED = 7
EPOCHS = 10
BATCH_SIZE = 200
DATA_FORMAT = "channels_first"
OUTPUT_DIR = "output"
IMAGE_SIZE = 28

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
SUMMARY_FILE = "summary.json"
BACKUP_DIR = "unfinished-run"  # the saved state of a run under way
OPTIONS_FILE = "options.json"


class UserError(Exception):
    """A mistake the user can fix: printed as one message, no traceback."""


# Setup: channels-first images and a seed that really repeats


def setup(seed, data_format=DATA_FORMAT):
    """Set the image layout and the seeds; return whether to use XLA.

    2017 did this with ``K.set_image_dim_ordering('th')`` and
    ``numpy.random.seed(seed)``.
    """
    keras.config.set_image_data_format(data_format)
    # The tutorial's own line. It seeds NumPy only; Keras 3 and the
    # backends keep random generators of their own.
    numpy.random.seed(seed)
    # Seeds Python, NumPy and the backend, so weights, shuffling and
    # dropout start from the same place on every run.
    keras.utils.set_random_seed(seed)
    use_xla = needs_xla(data_format)
    make_deterministic(use_xla)
    return use_xla


def needs_xla(data_format):
    """Does this build need XLA to train a channels-first convolution?

    TensorFlow's CPU kernels for the gradient of an NCHW convolution exist
    only in builds with oneDNN enabled. Elsewhere (``TF_ENABLE_ONEDNN_OPTS=0``
    and some CPU builds) training fails with "Conv2DCustomBackpropInputOp
    only supports NHWC". XLA compiles its own convolution code, which
    accepts either layout. We try one tiny convolution and its gradient and
    only pay for XLA when that fails.
    """
    if keras.backend.backend() != "tensorflow":
        return False
    if data_format != "channels_first":
        return False
    import tensorflow as tf

    images = tf.zeros((1, 2, 5, 5))
    kernel = tf.zeros((3, 3, 2, 2))
    try:
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = tf.nn.convolution(
                images, kernel, padding="VALID", data_format="NCHW"
            )
        tape.gradient(outputs, [images, kernel])
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
        return True
    return False


def make_deterministic(use_xla):
    """Ask the backend for operations that give the same result every time.

    NOTE: TensorFlow refuses to compile max-pooling gradients with XLA while
    its op determinism is on ("MaxPool gradient ops do not yet have a
    deterministic XLA implementation"), and Keras quietly turns XLA off in
    that case. On the XLA path we therefore leave the switch off: XLA's CPU
    code does not use the unordered parallel sums that the switch guards
    against, and the tests check that two such runs give identical losses.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow" and not use_xla:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
    # JAX on the CPU is deterministic already.


def backend_version():
    """The version of the library behind Keras, for the log and summary."""
    backend = keras.backend.backend()
    module = __import__(backend)
    return f"{backend} {getattr(module, '__version__', '?')}"


def versions():
    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": backend_version(),
        "numpy": numpy.__version__,
    }


# Loading and shaping the data

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_MAGIC = {3: 2051, 1: 2049}  # images have 3 dimensions, labels 1
MAX_ARRAY_BYTES = 2**30  # no MNIST array comes near 1 GiB (x_train: 47 MB)
ARRAY_NAMES = tuple(IDX_NAMES)


def load_mnist(source=None):
    """Return ``(X_train, y_train), (X_test, y_test)`` and where they came from.

    With no source, Keras downloads MNIST once and caches it, as in 2017.
    A source is an ``.npz`` file in the Keras layout or a folder holding the
    four original IDX files, plain or gzip-compressed.
    """
    if source is None:
        arrays, origin = download_mnist()
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            arrays = read_idx_folder(path)
            origin = f"{path} (IDX files)"
        elif path.is_file():
            arrays = read_npz(path)
            origin = f"{path} (.npz)"
        else:
            raise UserError(
                f"MNIST data not found at {path} (from --data or MNIST_DATA). "
                "Give the path of an mnist.npz file, or of a folder holding "
                "the four IDX files."
            )
        check_arrays(arrays, path)
    return (
        (arrays["x_train"], arrays["y_train"]),
        (arrays["x_test"], arrays["y_test"]),
        origin,
    )


def keras_cache_file():
    home = os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))
    return Path(home).expanduser() / "datasets" / "mnist.npz"


def download_mnist():
    """Keras's own loader: downloads once, then reads its cache."""
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as error:  # Keras raises a bare Exception on failure.
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(
            f"Could not download MNIST: {reason}\n"
            "Ways out:\n"
            "  * use a local copy: --data PATH, or set MNIST_DATA=PATH, where\n"
            "    PATH is an mnist.npz in the Keras layout or a folder with\n"
            "    the four original IDX files (plain or .gz);\n"
            "  * or copy the mnist.npz that Keras downloads on another machine\n"
            f"    to {keras_cache_file()} (the Keras cache; KERAS_HOME moves it;\n"
            "    Keras checks the file's hash and replaces any other copy);\n"
            "  * behind a proxy, set HTTPS_PROXY; if the proxy re-signs\n"
            "    certificates, point SSL_CERT_FILE at your organisation's\n"
            "    CA bundle."
        ) from None
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return arrays, f"Keras download cache ({keras_cache_file()})"


def read_npz(path):
    """Read the four arrays of an ``.npz`` without ever unpickling."""
    # An .npz is a zip archive; a truncated download or a proxy's web page
    # is not, and NumPy would otherwise try to read it as a pickle.
    if not zipfile.is_zipfile(path):
        raise damaged(path, "not a complete .npz (zip) archive")
    try:
        check_npz_sizes(path)
        with numpy.load(path, allow_pickle=False) as archive:
            missing = [name for name in ARRAY_NAMES if name not in archive.files]
            if missing:
                raise UserError(
                    f"{path} lacks the array(s) {', '.join(missing)}. An MNIST "
                    f".npz holds {', '.join(ARRAY_NAMES)}; it has "
                    f"{', '.join(archive.files) or 'no arrays'}."
                )
            arrays = {name: archive[name] for name in ARRAY_NAMES}
    except UserError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error) or "Object arrays" in str(error):
            raise UserError(
                f"{path} holds Python objects, which can only be read by "
                "unpickling, and unpickling can run any code. It was not "
                "loaded. Save MNIST as plain uint8 arrays instead."
            ) from None
        raise damaged(path, error) from None
    except Exception as error:  # zip, zlib and NumPy raise many kinds
        raise damaged(path, error) from None
    for name, value in arrays.items():
        if not isinstance(value, numpy.ndarray):
            raise damaged(path, f"{name} is not a NumPy array")
    return arrays


def check_npz_sizes(path):
    """Read each array's header, and refuse sizes no MNIST file has.

    This happens before NumPy sets memory aside for the arrays, so a damaged
    header that announces terabytes is caught here.
    """
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            with archive.open(member) as stream:
                major, _ = numpy.lib.format.read_magic(stream)
                if major == 1:
                    shape, _, dtype = numpy.lib.format.read_array_header_1_0(stream)
                else:
                    shape, _, dtype = numpy.lib.format.read_array_header_2_0(stream)
            size = math.prod(shape) * dtype.itemsize
            if size > MAX_ARRAY_BYTES:
                raise damaged(path, f"{member} announces {size:,} bytes")


def damaged(path, error):
    reason = " ".join(str(error).split()) or type(error).__name__
    return UserError(
        f"{path} is damaged or not an MNIST file, and cannot be read "
        f"({reason}). It may be an interrupted download; --data takes an "
        ".npz file or a folder of IDX files. The file was left as it is; "
        "replace it with a complete copy."
    )


def find_idx_file(folder, stem):
    """The IDX file for one array, under its usual names, plain or gzipped."""
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx_folder(folder):
    found = {name: find_idx_file(folder, stem) for name, stem in IDX_NAMES.items()}
    arrays = {name: read_idx(path) for name, path in found.items() if path}
    missing = [IDX_NAMES[name] for name, path in found.items() if path is None]
    if missing:
        raise UserError(
            f"{folder} lacks the IDX file(s) {', '.join(missing)} "
            "(plain or .gz). A MNIST folder holds all four."
        )
    return arrays


def read_idx(path):
    """Read one IDX file: a magic number, the sizes, then unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise damaged(path, error) from None
    kind = "images" if "images" in path.name else "labels"
    dimensions = 3 if kind == "images" else 1
    magic = IDX_MAGIC[dimensions]
    if len(data) < 4:
        raise UserError(
            f"{path} holds {len(data)} bytes, too few for an IDX file; "
            "replace it with a complete copy."
        )
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise UserError(
            f"{path} is not an MNIST {kind} file: its magic number is "
            f"{found}, expected {magic} (unsigned bytes, {dimensions} "
            "dimension(s))."
        )
    header = 4 + 4 * dimensions
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions)
    )
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise UserError(
            f"{path} is damaged: its header announces {shape} values "
            f"({expected} bytes in all) but the file has {len(data)} bytes."
        )
    return numpy.frombuffer(data, numpy.uint8, offset=header).reshape(shape)


def check_arrays(arrays, path):
    """Refuse data that would train nonsense, naming what is wrong."""
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise UserError(
                f"{path}: x_{split} has shape {images.shape}; expected "
                f"(N, {IMAGE_SIZE}, {IMAGE_SIZE}), one 28 x 28 image per row."
            )
        if images.dtype != numpy.uint8:
            raise UserError(
                f"{path}: x_{split} holds {images.dtype}; expected uint8 "
                "grey levels 0-255, as in the original MNIST."
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise UserError(
                f"{path}: y_{split} has shape {labels.shape}; expected "
                f"({len(images)},), one label per image of x_{split}."
            )
        if not numpy.issubdtype(labels.dtype, numpy.integer):
            raise UserError(
                f"{path}: y_{split} holds {labels.dtype}; expected whole numbers 0-9."
            )
        bad = numpy.flatnonzero((labels < 0) | (labels > 9))
        if bad.size:
            raise UserError(
                f"{path}: y_{split}[{bad[0]}] is {labels[bad[0]]}; labels must "
                f"be digits 0-9 ({bad.size} label(s) out of range)."
            )
        if len(images) == 0:
            raise UserError(f"{path}: x_{split} holds no images.")


def shape_images(images):
    """(N, 28, 28) grey levels 0-255 -> (N, 1, 28, 28) float32 in 0-1.

    The 1 is the single grey channel; channels-first puts it before the
    height and width.
    """
    if keras.config.image_data_format() == "channels_first":
        images = images.reshape(images.shape[0], 1, IMAGE_SIZE, IMAGE_SIZE)
    else:
        images = images.reshape(images.shape[0], IMAGE_SIZE, IMAGE_SIZE, 1)
    images = images.astype("float32")
    return images / 255


def prepare_data(X_train, y_train, X_test, y_test):
    """Shape the images and one-hot encode the labels, as in 2017."""
    X_train = shape_images(X_train)
    X_test = shape_images(X_test)
    # One column per class: the label 5 becomes [0 0 0 0 0 1 0 0 0 0].
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    y_train = to_categorical(y_train, num_classes)
    y_test = to_categorical(y_test, num_classes)
    return X_train, y_train, X_test, y_test, num_classes


# The model


def larger_model(num_classes=10, jit_compile=False):
    """The 2017 large CNN, built and compiled."""
    if keras.config.image_data_format() == "channels_first":
        input_shape = (1, IMAGE_SIZE, IMAGE_SIZE)
    else:
        input_shape = (IMAGE_SIZE, IMAGE_SIZE, 1)
    model = Sequential(name="large_cnn")
    model.add(keras.Input(shape=input_shape))  # (1, 28, 28)
    model.add(Conv2D(30, (5, 5), activation="relu"))  # (30, 24, 24)
    model.add(MaxPooling2D(pool_size=(2, 2)))  # (30, 12, 12)
    model.add(Conv2D(15, (3, 3), activation="relu"))  # (15, 10, 10)
    model.add(MaxPooling2D(pool_size=(2, 2)))  # (15, 5, 5)
    model.add(Dropout(0.2))
    model.add(Flatten())  # 375
    model.add(Dense(128, activation="relu"))
    model.add(Dense(50, activation="relu"))
    model.add(Dense(num_classes, activation="softmax"))
    # Compile model
    model.compile(
        loss="categorical_crossentropy",
        optimizer="adam",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


# Command line


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seed_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be 0 to 2**32 - 1, got {value}")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="mnist_large_cnn.py",
        description="Train the 2017 Keras large CNN on MNIST and print its "
        "test error. The defaults reproduce the 2017 run.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=EPOCHS,
        help="passes over the training images",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=BATCH_SIZE,
        help="images per weight update",
    )
    parser.add_argument(
        "--seed",
        type=seed_int,
        default=SEED,
        help="random seed for weights, shuffling and dropout",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        default=os.environ.get("MNIST_DATA"),
        help="local MNIST: an .npz in the Keras layout or a "
        "folder with the four IDX files; without it Keras "
        "downloads MNIST (default: $MNIST_DATA if set)",
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="train on the first N training images only "
        "(for quick runs; default: all 60,000)",
    )
    parser.add_argument(
        "--data-format",
        choices=("channels_first", "channels_last"),
        default=DATA_FORMAT,
        help="image layout: (1, 28, 28) as in 2017, or (28, 28, 1)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished run in the output folder, or discard an "
        "unfinished one made with other options (one with the same options "
        "is always resumed)",
    )
    parser.add_argument(
        "--predict",
        nargs="+",
        metavar="IMAGE",
        help="instead of training, say which digit each picture shows, "
        "using the model given by --model",
    )
    parser.add_argument(
        "--model",
        metavar="PATH",
        default=str(Path(OUTPUT_DIR) / MODEL_FILE),
        help="the trained model that --predict uses",
    )
    parser.add_argument(
        "--show-input",
        metavar="DIR",
        help="with --predict: save NAME-input.png per picture into DIR, the "
        "picture beside the 28 x 28 input the network saw (replacing "
        "earlier ones of the same name)",
    )
    parser.add_argument(
        "--output",
        metavar="DIR",
        default=OUTPUT_DIR,
        help="folder for model.keras, history.csv and summary.json; an "
        "interrupted run is resumed from there",
    )
    args = parser.parse_args(argv)
    if args.show_input and not args.predict:
        parser.error("--show-input works with --predict only")
    return args


# Outputs


def check_writable(folder):
    """Fail before training, not after it, if the outputs cannot be saved."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(
            f"Cannot write to the output folder {folder} ({error.strerror or error}). "
            "Choose another with --output DIR."
        ) from None
    return folder


def temporary_twin(path):
    """An unused name beside ``path``, with the same suffix (Keras checks it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


def replace_atomically(path, write):
    """Write through a temporary file, then rename it over ``path``.

    A rename within one folder is atomic, so an interruption leaves either
    the old file or the new one, never half of one.
    """
    partial = temporary_twin(path)
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_json(path, data):
    def write(partial):
        partial.write_text(json.dumps(data, indent=2) + "\n")

    replace_atomically(path, write)


# Fit, evaluate and report


class ShuffledBatches:
    """The training images in batches, in a new order every epoch.

    ``fit()`` can shuffle arrays by itself, but its order depends on how
    many epochs this process has already run, so a resumed run would see
    other batches than an uninterrupted one. Here the order of epoch ``e``
    depends on the seed and ``e`` only. (Keras 2 shuffled with NumPy too.)
    The batches come from a ``tf.data`` pipeline, which Keras reads fast
    and which works under every backend.
    """

    def __init__(self, images, labels, batch_size, seed):
        import tensorflow as tf

        self.seed, self.size = seed, len(images)
        self.steps = -(-self.size // batch_size)  # rounded up
        self.order = tf.Variable(tf.range(self.size, dtype="int64"), trainable=False)
        images, labels = tf.constant(images), tf.constant(labels)

        def batch(step):
            chosen = self.order[step * batch_size : (step + 1) * batch_size]
            return tf.gather(images, chosen), tf.gather(labels, chosen)

        # A batch is made only when training asks for it, so always after
        # start_epoch() has set the order of its epoch.
        options = tf.data.Options()
        options.experimental_optimization.inject_prefetch = False
        batches = tf.data.Dataset.range(self.steps).map(batch)
        self.dataset = batches.with_options(options)

    def start_epoch(self, epoch):
        rng = numpy.random.default_rng([self.seed, epoch])
        self.order.assign(rng.permutation(self.size))

    def __len__(self):
        return self.steps


class RepeatableEpochs(keras.callbacks.Callback):
    """Start every epoch where an uninterrupted run would start it.

    Keras's BackupAndRestore brings back the weights and the optimiser after
    an interruption, but not the random generator of the dropout layer, nor
    the order of the batches. This callback sets both from the epoch number.
    """

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_train_begin(self, logs=None):
        self.generators = [
            (layer.seed_generator, layer.seed_generator.state.numpy())
            for layer in self.model.layers
            if getattr(layer, "seed_generator", None) is not None
        ]

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.start_epoch(epoch)
        for generator, first_state in self.generators:
            # One dropout draw per step: the count an unbroken run has reached.
            state = first_state.copy()
            state[-1] += epoch * len(self.batches)
            generator.state.assign(state)
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # Recorded in the logs, so that CSVLogger writes it to the history.
        logs["seconds"] = round(time.perf_counter() - self.started, 3)


def run_options(args, origin):
    """What a resumed run must share with the run it continues."""
    return {
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "limit": args.limit or "all",
        "data_format": args.data_format,
        "data": origin,
    }


def prepare_output(args, options):
    """Start afresh, resume an interrupted run, or refuse; never guess.

    Returns the output folder.
    """
    output = check_writable(args.output)
    backup = output / BACKUP_DIR
    saved_file = backup / OPTIONS_FILE
    if backup.exists() and not saved_file.is_file():
        raise UserError(
            f"{backup} exists but was not made by this script; it was left "
            "alone. Move it, or choose another --output."
        )
    if backup.exists():
        try:
            saved = json.loads(saved_file.read_text())
        except ValueError:  # damaged by hand: treated as other options
            saved = {}
        if saved == options:
            return output
        if not args.overwrite:
            changed = ", ".join(
                f"{key} {saved.get(key, '?')} -> {value}"
                for key, value in options.items()
                if saved.get(key) != value
            )
            raise UserError(
                f"{output} holds an unfinished run with other options "
                f"({changed}). Run the same command as before to resume it, "
                "add --overwrite to discard it and start afresh, or choose "
                "another --output."
            )
        shutil.rmtree(backup)
    finished = [
        name
        for name in (MODEL_FILE, HISTORY_FILE, SUMMARY_FILE)
        if (output / name).exists()
    ]
    if finished and not args.overwrite:
        raise UserError(
            f"{output} already holds {', '.join(finished)} from an earlier "
            "run. Choose another --output, or add --overwrite to replace them "
            "(they are replaced only when the new run has finished)."
        )
    backup.mkdir()
    write_json(saved_file, options)
    return output


def read_history(path):
    """The per-epoch rows of a history file, one per epoch.

    An epoch interrupted after its row was written but before its backup
    was saved runs again on resume and is written twice, with the same
    values; the later row is kept.
    """
    with open(path, newline="") as stream:
        rows = {int(row["epoch"]): row for row in csv.DictReader(stream)}
    return [rows[epoch] for epoch in sorted(rows)]


def finished_epochs(backup):
    """How many epochs an unfinished run has recorded in its history."""
    history = backup / HISTORY_FILE
    return len(read_history(history)) if history.is_file() else 0


def write_history(path, rows):
    def write(partial):
        with open(partial, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    replace_atomically(path, write)


def train(args):
    """Run the whole 2017 script; return the summary it writes."""
    started = time.perf_counter()
    use_xla = setup(args.seed, args.data_format)
    info = versions()
    print(
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in info.items() if k != "backend")
        + f", backend {info['backend']}"
    )
    if use_xla:
        print(
            "This TensorFlow build cannot train channels-first convolutions "
            "on the CPU; the training step is compiled with XLA instead."
        )

    (X_train, y_train), (X_test, y_test), origin = load_mnist(args.data)
    print(f"Data: {origin}")
    output = prepare_output(args, run_options(args, origin))
    backup = output / BACKUP_DIR
    if args.limit:
        X_train, y_train = X_train[: args.limit], y_train[: args.limit]
    X_train, y_train, X_test, y_test, num_classes = prepare_data(
        X_train, y_train, X_test, y_test
    )
    print(f"X_train {X_train.shape} {X_train.dtype}, y_train {y_train.shape}")
    print(f"X_test  {X_test.shape} {X_test.dtype}, y_test  {y_test.shape}")

    # build the model
    model = larger_model(num_classes, jit_compile=use_xla)
    model.summary()

    # Fit the model
    done = finished_epochs(backup)
    if done:
        print(f"Resuming the interrupted run kept in {backup}: {done} epoch(s) done")
    batches = ShuffledBatches(X_train, y_train, args.batch_size, args.seed)
    fit_started_at = time.time()
    model.fit(
        batches.dataset,
        validation_data=(X_test, y_test),
        epochs=args.epochs,
        shuffle=False,  # ShuffledBatches does it, the same way on resume
        verbose=1 if sys.stdout.isatty() else 2,
        callbacks=[
            RepeatableEpochs(batches),
            keras.callbacks.CSVLogger(backup / HISTORY_FILE, append=True),
            # Saves weights, optimiser and epoch after each epoch; on a new
            # start with the same folder, training resumes from there.
            keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False),
        ],
    )

    # Final evaluation of the model
    scores = model.evaluate(X_test, y_test, verbose=0)
    error = 100 - scores[1] * 100

    history = read_history(backup / HISTORY_FILE)
    replace_atomically(output / MODEL_FILE, model.save)
    write_history(output / HISTORY_FILE, history)
    summary = {
        "versions": info,
        "seed": args.seed,
        "data": origin,
        "options": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "limit": args.limit,
            "data_format": args.data_format,
            "xla": use_xla,
        },
        "train_images": int(X_train.shape[0]),
        "test_images": int(X_test.shape[0]),
        "resumed": done > 0,
        "fit_started_at": fit_started_at,  # Unix time, for benchmarks
        "epoch_seconds": [float(row["seconds"]) for row in history],
        "total_seconds": round(time.perf_counter() - started, 3),
        "test_loss": float(scores[0]),
        "test_accuracy": float(scores[1]),
        "error_percent": round(float(error), 4),
    }
    # The summary is written last: its presence marks a finished run.
    write_json(output / SUMMARY_FILE, summary)
    shutil.rmtree(backup)
    print(f"Wrote {output / MODEL_FILE}, {HISTORY_FILE} and {SUMMARY_FILE}")
    print("Large CNN Error: %.2f%%" % error)
    return summary


# Predict: the trained network on your own pictures


def load_trained_model(path):
    """Load a saved model in Keras's safe mode, which runs no stored code."""
    path = Path(path)
    if path.is_dir():  # the output folder of a run
        path = path / MODEL_FILE
    if not path.is_file():
        raise UserError(
            f"No trained model at {path}. Train one first (a default run "
            f"writes {Path(OUTPUT_DIR) / MODEL_FILE}), or give its path with "
            "--model."
        )
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many kinds; all mean "unusable".
        reason = " ".join(str(error).split())
        if "arbitrary code" in reason or "safe_mode" in reason:
            raise UserError(
                f"{path} was refused: loading it would run Python code stored "
                "in the file (for example a Lambda layer), which could do "
                "anything. Use a model trained by this script instead."
            ) from None
        raise UserError(
            f"{path} is not a Keras model this script can read "
            f"({reason[:300] or type(error).__name__})."
        ) from None


def predict(args):
    """Print the three most likely digits for each picture.

    Returns the number of pictures that could not be used.
    """
    from digit_pictures import PictureError, prepare_digit, save_input_figure

    model = load_trained_model(args.model)
    shape = (1, *model.input_shape[1:])  # (1, 1, 28, 28) or (1, 28, 28, 1)
    figures = Path(args.show_input) if args.show_input else None
    if figures:
        check_writable(figures)
    failures = 0
    for picture in args.predict:
        try:
            digit = prepare_digit(picture)
            if figures:
                figure = figures / f"{Path(picture).stem}-input.png"
                save_input_figure(picture, digit, figure)
        except PictureError as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        probabilities = model.predict(digit.reshape(shape), verbose=0)[0]
        best = numpy.argsort(probabilities)[::-1][:3]
        ranked = ", ".join(f"{d} ({probabilities[d]:.3f})" for d in best)
        print(f"{picture}: {ranked}")
    if figures:
        print(f"What the network saw is drawn in {figures}")
    return failures


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.predict:
            return 2 if predict(args) else 0
        train(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        backup = Path(args.output) / BACKUP_DIR
        done = 0 if args.predict else finished_epochs(backup)
        if done:
            print(
                f"\nInterrupted. {done} finished epoch(s) are kept in {backup}; "
                "run the same command again to carry on from there.",
                file=sys.stderr,
            )
        else:
            print("\nInterrupted before any epoch finished.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
