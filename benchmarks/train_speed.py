"""How fast does the large CNN train here, and how far is that from the limit?

Runs ``mnist_large_cnn.py`` in fresh processes on the same data and seed:
the faithful layout (channels-first), the same model channels-last, and the
same two under every other Keras backend that is installed. For each it
reports the median seconds per epoch (epochs after the first), images per
second, the time from launch to the first training step, and peak memory.
It also measures the machine's float32 matrix-multiply speed with NumPy, as
a ceiling, counts the model's floating-point operations per image from its
layers, and says what fraction of the ceiling each run reached.

    python benchmarks/train_speed.py --data PATH/mnist.npz

prints a Markdown table and writes it to benchmarks/results.md. ``--tiny``
runs a few seconds' worth, for tests; its figures mean nothing.
"""

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "mnist_large_cnn.py"
sys.path.insert(0, str(ROOT))  # for importing the training script
BACKENDS = ("tensorflow", "jax", "torch")
FORMATS = ("channels_first", "channels_last")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data",
        default=os.environ.get("MNIST_DATA"),
        help="local MNIST, as for the training script (default: $MNIST_DATA)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="epochs per run; the median is taken over all but the first",
    )
    parser.add_argument(
        "--limit", type=int, help="training images per run (default: all)"
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        help="Keras backends to try; missing ones are reported, not failed "
        f"(default: {' '.join(BACKENDS)}; with --tiny, tensorflow)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results.md",
        help="where the Markdown table goes",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a quick check that the benchmark works: 400 images, 2 epochs, "
        "a small matrix product",
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.limit = 2, 400
    if args.backends is None:
        args.backends = ["tensorflow"] if args.tiny else list(BACKENDS)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first one is warm-up)")
    return args


# What the machine can do


def matmul_gflops(size, repeats):
    """Best float32 matrix-multiply speed NumPy reaches, in GFLOP/s."""
    rng = numpy.random.default_rng(0)
    a = rng.random((size, size), dtype=numpy.float32)
    b = rng.random((size, size), dtype=numpy.float32)
    a @ b  # warm up the BLAS threads
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


# What the model needs


def model_flops():
    """Floating-point operations per image: forward, and one training step.

    Counted from the layers: a convolution or dense layer does one multiply
    and one add per weight use. A training step is counted as three forward
    passes (the forward pass, then the gradients with respect to the inputs
    and to the weights), the usual estimate; pooling, activations and the
    optimiser are left out, as they are small here.
    """
    import mnist_large_cnn as cnn

    cnn.setup(cnn.SEED)
    model = cnn.larger_model(10)
    multiply_adds = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        outputs = layer.output.shape[1:]
        if len(kernel.shape) == 4:  # (kh, kw, in, out): once per output pixel
            positions = numpy.prod(outputs) // kernel.shape[-1]
            multiply_adds += positions * numpy.prod(kernel.shape)
        else:
            multiply_adds += numpy.prod(kernel.shape)
    forward = 2 * int(multiply_adds)
    return forward, 3 * forward, int(multiply_adds)


# One run of the training script


def installed(backend):
    return importlib.util.find_spec(backend) is not None


def run_once(args, backend, data_format, folder):
    """Train in a fresh process; return its figures, or why it failed."""
    command = [
        sys.executable,
        str(SCRIPT),
        "--epochs",
        str(args.epochs),
        "--data-format",
        data_format,
        "--output",
        str(folder),
    ]
    if args.data:
        command += ["--data", args.data]
    if args.limit:
        command += ["--limit", str(args.limit)]
    env = dict(os.environ, KERAS_BACKEND=backend)
    launched = time.time()
    process = subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        last = [line for line in stderr.splitlines() if line.strip()][-1:]
        return {"failed": last[0] if last else f"exit {process.returncode}"}
    summary = json.loads((folder / "summary.json").read_text())
    seconds = summary["epoch_seconds"]
    median = statistics.median(seconds[1:])
    return {
        "epoch_seconds": median,
        "images_per_second": summary["train_images"] / median,
        # Start-up (imports, data, model) plus the extra time of the first
        # epoch over a typical one (tracing and compiling the step).
        "first_step_seconds": summary["fit_started_at"]
        - launched
        + seconds[0]
        - median,
        "peak_memory_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "train_images": summary["train_images"],
        "test_images": summary["test_images"],
        "xla": summary["options"]["xla"],
    }


# Where the time goes


PROFILE_CODE = """
import glob, json, sys, tempfile
sys.path.insert(0, sys.argv[2])
import tensorflow as tf
from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
import mnist_large_cnn as cnn

cnn.setup(cnn.SEED, sys.argv[1])
(x_train, y_train), (x_test, y_test), _ = cnn.load_mnist(sys.argv[3])
x, y, _, _, classes = cnn.prepare_data(x_train[:20000], y_train[:20000],
                                       x_test[:10], y_test[:10])
model = cnn.larger_model(classes)
batches = cnn.ShuffledBatches(x, y, cnn.BATCH_SIZE, cnn.SEED)
model.fit(batches.dataset, epochs=1, verbose=0, shuffle=False)  # warm-up
folder = tempfile.mkdtemp()
tf.profiler.experimental.start(folder)
model.fit(batches.dataset, epochs=1, verbose=0, shuffle=False)
tf.profiler.experimental.stop()
files = glob.glob(folder + "/**/*.xplane.pb", recursive=True)
data, _ = plugin.xspace_to_tools_data(files, "framework_op_stats", {})
table = json.loads(data)[0]
names = [column["id"] for column in table["cols"]]
rows = [dict(zip(names, [c["v"] if c else None for c in r["c"]]))
        for r in table["rows"]]
print(json.dumps([[r["operation"], r["type"], r["total_self_time"]]
                  for r in rows if r["type"] != "IDLE"]))
"""


def layer_profile(data_format, data):
    """Self time of each TensorFlow operation over 100 training steps.

    Runs in a fresh process with the script's own setup (seed, layout,
    deterministic operations), on 20,000 real images, after one epoch of
    warm-up, under TensorFlow's profiler. Returns {operation: (type, ms)}.
    """
    result = subprocess.run(
        [sys.executable, "-c", PROFILE_CODE, data_format, str(ROOT), data],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if result.returncode != 0:
        return None
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    return {name: (kind, micros / 1000) for name, kind, micros in rows}


def profile_table(data, top=12):
    """The operations that take longest channels-first, beside channels-last."""
    profiles = {fmt: layer_profile(fmt, data) for fmt in FORMATS}
    if None in profiles.values():
        return ["(TensorFlow's profiler could not run here.)"]
    first, last = profiles["channels_first"], profiles["channels_last"]
    lines = [
        "| operation (100 steps of 200 images) | type | channels_first (ms) "
        "| channels_last (ms) |",
        "| --- | --- | ---: | ---: |",
    ]
    ranked = sorted(first, key=lambda name: -first[name][1])
    for name in ranked[:top]:
        kind, milliseconds = first[name]
        other = f"{last[name][1]:.0f}" if name in last else "-"
        short = name.removeprefix("StatefulPartitionedCall/")[:60]
        lines.append(f"| `{short}` | {kind} | {milliseconds:.0f} | {other} |")
    totals = [sum(ms for _, ms in p.values()) for p in (first, last)]
    lines.append(f"| all operations | | {totals[0]:.0f} | {totals[1]:.0f} |")
    return lines


# The report


def table(rows, ceiling, flops):
    forward, training, _ = flops
    lines = [
        "| backend | layout | s / epoch | images / s | to first step (s) "
        "| peak memory (MB) | GFLOP/s | of ceiling |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    baseline = {}
    for backend, data_format, result in rows:
        if "failed" in result or "missing" in result:
            reason = result.get("failed") or result["missing"]
            lines.append(f"| {backend} | {data_format} | {reason} ||||||")
            continue
        work = training * result["train_images"] + forward * result["test_images"]
        gflops = work / result["epoch_seconds"] / 1e9
        layout = data_format + (" (XLA)" if result["xla"] else "")
        baseline.setdefault(backend, {})[data_format] = result["epoch_seconds"]
        lines.append(
            f"| {backend} | {layout} | {result['epoch_seconds']:.2f} "
            f"| {result['images_per_second']:,.0f} "
            f"| {result['first_step_seconds']:.1f} "
            f"| {result['peak_memory_mb']:,.0f} | {gflops:.1f} "
            f"| {gflops / ceiling:.1%} |"
        )
    ratios = [
        f"{backend}: channels-first / channels-last = "
        f"{times['channels_first'] / times['channels_last']:.2f}"
        for backend, times in baseline.items()
        if len(times) == 2
    ]
    return lines, ratios


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    size, repeats = (256, 3) if args.tiny else (2048, 10)
    ceiling = matmul_gflops(size, repeats)
    flops = model_flops()
    rows = []
    for backend in args.backends:
        for data_format in FORMATS:
            if not installed(backend):
                rows.append((backend, data_format, {"missing": "not installed"}))
                continue
            print(f"Timing {backend}, {data_format} ...", flush=True)
            with tempfile.TemporaryDirectory() as folder:
                result = run_once(args, backend, data_format, Path(folder))
            rows.append((backend, data_format, result))
    lines, ratios = table(rows, ceiling, flops)
    profile = []
    if not args.tiny and args.data and installed("tensorflow"):
        print("Profiling TensorFlow ...", flush=True)
        profile = ["", "Where the time goes (TensorFlow's profiler):", ""]
        profile += profile_table(args.data)
    forward, training, multiply_adds = flops
    images = args.limit or 60000
    report = [
        f"Training speed of the large CNN, {args.epochs} epochs of "
        f"{images:,} images each (median of epochs 2 to {args.epochs}), "
        "10,000 test images evaluated after each epoch.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, NumPy {numpy.__version__}.",
        f"Ceiling: NumPy float32 matrix multiply, {size} x {size}: "
        f"{ceiling:.0f} GFLOP/s.",
        f"Model: {multiply_adds:,} multiply-adds per image forward; "
        f"{training / 1e6:.2f} MFLOP per training image, so "
        f"{10 * 60000 * training / 1e12:.1f} TFLOP for the full 10-epoch run "
        f"(a floor of {10 * 60000 * training / ceiling / 1e9:.1f} s at the "
        "ceiling).",
        "",
        *lines,
        "",
        *ratios,
        *profile,
        "",
        f"Command: python benchmarks/train_speed.py {' '.join(sys.argv[1:])}".strip(),
        f"Benchmark wall time: {time.perf_counter() - started:.0f} s.",
    ]
    text = "\n".join(report) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
