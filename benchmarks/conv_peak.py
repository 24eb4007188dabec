"""This CPU's fp32 multiply-add peak against the GMAC/s of the model's heaviest convolutions, per backend.

    .venv/bin/python benchmarks/conv_peak.py [--threads 2] [--repeats 5] [--quick] [--cases p3,cls,mask14,mask28,deconv]
                                             [--backends tensorflow,jax,torch,onnxruntime,openvino]
                                             [--torch-python benchmarks/.venv-peers/bin/python]

Peak: theoretical from /proc/cpuinfo (CPUs used x fp32 SIMD lanes x 2 FMA units per core, assumed, x the
reported `cpu MHz`, not the boost clock) and measured (numpy float32 2048^3 matmul, median of --repeats, at
least 3), which the percentages use. Cases (NHWC float32, stride 1, "same", bias): conv3x3 256->256 and the
classification conv 256->720 at P3 (100x128) of an 800x1024 image; the mask head's conv3x3 at 14x14 and 28x28
and 2x2 stride-2 transposed conv, 100 RoIs (10 with --quick). One process per backend (--child): tf-keras,
jax-keras (Conv2D / Conv2DTranspose in a keras.Model, predict_on_batch), tf-raw (tf.nn in a tf.function),
jax-lax (jit of lax.conv_general_dilated / conv_transpose; threads via XLA_FLAGS, a hint), torch-nchw,
torch-cl (channels_last; --torch-python), ort, ov (one NCHW ONNX graph per case from onnx.helper, no
Transpose nodes; OpenVINO f32); a missing backend is skipped. Median wall seconds of --repeats calls after
2 warm-ups (1 after 1 with --quick). Prints the peaks, GMAC/s and % of peak tables (cases x variants), the
fastest variant per case, and a check per output: shape, finite, sampled values against the first variant.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from predict import load1  # noqa: E402

TAG = "CONV-JSON "
BACKENDS = ("tensorflow", "jax", "torch", "onnxruntime", "openvino")
VARIANTS = ("tf-keras", "tf-raw", "jax-keras", "jax-lax", "torch-nchw", "torch-cl", "ort", "ov")
# short name -> (label, kind, input H, input W, Cin, Cout, batch)
CASES = {
    "p3": ("fpn/head conv3x3 256->256 @ 100x128", "conv", 100, 128, 256, 256, 1),
    "cls": ("classification conv3x3 256->720 @ 100x128", "conv", 100, 128, 256, 720, 1),
    "mask14": ("mask conv3x3 256->256 @ 14x14", "conv", 14, 14, 256, 256, 100),
    "mask28": ("mask conv3x3 256->256 @ 28x28", "conv", 28, 28, 256, 256, 100),
    "deconv": ("mask transposed 2x2 s2 256->256 14->28", "deconv", 14, 14, 256, 256, 100),
}
DEFAULT_TORCH_PYTHON = os.path.join(HERE, ".venv-peers", "bin", "python")


def geometry(name, quick):
    """(NHWC output shape, MACs = out_H * out_W * kH * kW * Cin * Cout * batch; a 2x2 s2 transposed conv: 1 tap)."""
    _, kind, h, w, cin, cout, batch = CASES[name]
    n, scale = (10 if quick and batch > 1 else batch), (2 if kind == "deconv" else 1)
    return (n, h * scale, w * scale, cout), n * h * scale * w * scale * (1 if scale == 2 else 9) * cin * cout


def case_data(name, quick):
    """Seeded NHWC input, Keras-layout kernel (HWIO; transposed conv: H W Cout Cin) and bias."""
    import numpy as np

    _, kind, h, w, cin, cout, _ = CASES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((geometry(name, quick)[0][0], h, w, cin), dtype=np.float32)
    ksize = 2 if kind == "deconv" else 3
    kshape = (ksize, ksize, cout, cin) if kind == "deconv" else (ksize, ksize, cin, cout)
    kernel = (rng.standard_normal(kshape, dtype=np.float32) / np.sqrt(ksize * ksize * cin)).astype(np.float32)
    bias = rng.standard_normal(cout, dtype=np.float32) * 0.1
    return x, kernel, bias


def describe(out, seconds, shape, nchw=False):
    """JSON-able summary of one variant's output: seconds, NHWC shape, finite, values at a few NHWC positions."""
    import numpy as np

    out, (n, h, w, c) = np.asarray(out), shape
    nhwc = tuple(out.shape[i] for i in ((0, 2, 3, 1) if nchw else (0, 1, 2, 3)))
    positions = [(0, 0, 0, 0), (n - 1, h - 1, w - 1, c - 1), (0, h - 1, 0, c // 2), (n // 2, 1, w // 2, 3),
                 (n - 1, 7, 1, 5)]
    values = [float(out[i, m, j, k] if nchw else out[i, j, k, m]) for i, j, k, m in positions] if nhwc == shape else []
    return dict(seconds=seconds, shape=list(nhwc), finite=bool(np.isfinite(out).all()), sample=values)


def timed(fn, warmup, repeats):
    """(median wall seconds of `repeats` calls after `warmup` calls, last output)."""
    for _ in range(warmup):
        fn()
    walls = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), out


def keras_variant(keras, name, x, kernel, bias):
    """A keras.Model of the one layer of the case, with the case's weights: its predict_on_batch."""
    _, kind, h, w, cin, cout, _ = CASES[name]
    inputs = keras.Input((h, w, cin))
    layer = keras.layers.Conv2DTranspose(cout, 2, strides=2, padding="same") if kind == "deconv" \
        else keras.layers.Conv2D(cout, 3, padding="same")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([kernel, bias])
    return lambda: model.predict_on_batch(x)


def tensorflow_variants(name, x, kernel, bias, threads):
    import keras
    import tensorflow as tf

    xt, k, b = tf.constant(x), tf.constant(kernel), tf.constant(bias)
    n, h, w, _ = x.shape
    if CASES[name][1] == "deconv":
        conv = tf.function(lambda t: tf.nn.bias_add(tf.nn.conv2d_transpose(
            t, k, (n, 2 * h, 2 * w, k.shape[2]), 2, "SAME"), b))
    else:
        conv = tf.function(lambda t: tf.nn.bias_add(tf.nn.conv2d(t, k, 1, "SAME"), b))
    return {"tf-keras": (keras_variant(keras, name, x, kernel, bias), False),
            "tf-raw": (lambda: conv(xt), False)}


def jax_variants(name, x, kernel, bias, threads):
    import jax
    import jax.numpy as jnp
    import keras

    xj, k, b = jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(bias)
    dims = ("NHWC", "HWIO", "NHWC")
    if CASES[name][1] == "deconv":
        conv = jax.jit(lambda t: jax.lax.conv_transpose(t, k, (2, 2), "SAME", dimension_numbers=dims,
                                                        transpose_kernel=True) + b)
    else:
        conv = jax.jit(lambda t: jax.lax.conv_general_dilated(t, k, (1, 1), "SAME", dimension_numbers=dims) + b)
    return {"jax-keras": (keras_variant(keras, name, x, kernel, bias), False),
            "jax-lax": (lambda: conv(xj).block_until_ready(), False)}


def torch_variants(name, x, kernel, bias, threads):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    deconv = CASES[name][1] == "deconv"
    # torch weights: conv (Cout, Cin, kH, kW), transposed conv (Cin, Cout, kH, kW); both are HWxy -> yxHW
    wt, bt = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()), torch.from_numpy(bias)

    def make(memory_format):
        xm, wm = xt.contiguous(memory_format=memory_format), wt.contiguous(memory_format=memory_format)

        def call():
            with torch.inference_mode():
                return F.conv_transpose2d(xm, wm, bt, stride=2) if deconv else F.conv2d(xm, wm, bt, padding=1)
        return lambda: call().numpy()
    return {"torch-nchw": (make(torch.contiguous_format), True), "torch-cl": (make(torch.channels_last), True)}


def onnx_bytes(name, x, kernel, bias):
    """An NCHW ONNX graph of the case (Conv or ConvTranspose with bias), serialized."""
    from onnx import TensorProto, helper, numpy_helper

    n, h, w, cin = x.shape
    deconv, cout = CASES[name][1] == "deconv", CASES[name][5]
    weight = numpy_helper.from_array(kernel.transpose(3, 2, 0, 1).copy(), "W")
    node = helper.make_node("ConvTranspose", ["x", "W", "B"], ["y"], kernel_shape=[2, 2], strides=[2, 2]) \
        if deconv else helper.make_node("Conv", ["x", "W", "B"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    scale = 2 if deconv else 1
    graph = helper.make_graph([node], name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, cin, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, cout, h * scale, w * scale])],
                              [weight, numpy_helper.from_array(bias, "B")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def onnxruntime_variants(name, x, kernel, bias, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(onnx_bytes(name, x, kernel, bias), options, providers=["CPUExecutionProvider"])
    xn = x.transpose(0, 3, 1, 2).copy()
    return {"ort": (lambda: session.run(None, {"x": xn})[0], True)}


def openvino_variants(name, x, kernel, bias, threads):
    import openvino as ov

    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "case.onnx"), "wb") as handle:
            handle.write(onnx_bytes(name, x, kernel, bias))
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        compiled = ov.Core().compile_model(os.path.join(folder, "case.onnx"), "CPU", config)
    request, xn = compiled.create_infer_request(), x.transpose(0, 3, 1, 2).copy()
    return {"ov": (lambda: request.infer({0: xn})[0], True)}


def child_setup(backend, threads):
    """Imports the backend, its threads set before any op; its version."""
    import importlib

    module = importlib.import_module(backend)
    if backend == "tensorflow":
        module.config.threading.set_intra_op_parallelism_threads(threads)
        module.config.threading.set_inter_op_parallelism_threads(1)
    if backend in ("onnxruntime", "openvino"):
        importlib.import_module("onnx")  # the graphs are built with onnx.helper
    return f"{backend} {module.__version__}"


def run_child(args):
    """--child BACKEND: one JSON line of versions, then one per case; a 'skip' line when not importable."""
    if args.child == "peak":
        import numpy as np

        a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
        seconds, _ = timed(lambda: a @ a, 1, max(3, args.repeats))
        print(TAG + json.dumps(dict(seconds=seconds, numpy=np.__version__)), flush=True)
        return
    try:
        info = child_setup(args.child, args.threads)
    except ImportError as error:
        print(TAG + json.dumps(dict(skip=f"not importable from {sys.executable}: {error}")), flush=True)
        return
    print(TAG + json.dumps(dict(info=info)), flush=True)
    warmup, repeats = (1, 1) if args.quick else (2, args.repeats)
    make = globals()[f"{args.child}_variants"]
    for name in args.cases:
        x, kernel, bias = case_data(name, args.quick)
        shape, results = geometry(name, args.quick)[0], {}
        try:
            variants = make(name, x, kernel, bias, args.threads)
        except Exception as error:  # a backend that cannot build the case is reported, not fatal
            variants, results[args.child] = {}, dict(error=f"{type(error).__name__}: {error}"[:300])
        for variant, (fn, nchw) in variants.items():
            try:
                seconds, out = timed(fn, warmup, repeats)
                results[variant] = describe(out, seconds, shape, nchw)
            except Exception as error:
                results[variant] = dict(error=f"{type(error).__name__}: {error}"[:300])
        print(TAG + json.dumps(dict(case=name, variants=results)), flush=True)


def cpu_info():
    """(model name, fp32 lanes, SIMD name, has fma, mean reported MHz, AMD Zen 4) from /proc/cpuinfo."""
    with open("/proc/cpuinfo") as handle:
        text = handle.read()
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()) if "flags" in text else set()
    mhz = [float(value) for value in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", text, re.M)]
    lanes, simd = (16, "avx512f") if "avx512f" in flags else (8, "avx2") if "avx2" in flags else (4, "sse")
    zen4 = simd == "avx512f" and "AuthenticAMD" in text and re.search(r"^cpu family\s*:\s*25$", text, re.M)
    return (model.group(1) if model else "unknown", lanes, simd, "fma" in flags,
            statistics.mean(mhz) if mhz else float("nan"), bool(zen4))


def spawn(args, backend, env):
    """Runs this script with --child backend; (list of JSON dicts, stderr tail)."""
    python = args.torch_python if backend == "torch" else sys.executable
    command = [python, os.path.abspath(__file__), "--child", backend, "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--cases", ",".join(args.cases)] + (["--quick"] if args.quick else [])
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = [json.loads(line[len(TAG):]) for line in proc.stdout.splitlines() if line.startswith(TAG)]
    tail = proc.stderr.strip().splitlines()[-1:] if proc.returncode else []
    return lines, (f"exit {proc.returncode}: " + (" ".join(tail) or "no stderr")) if proc.returncode else ""


def child_env(backend, threads):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if backend in ("tensorflow", "jax"):
        env["KERAS_BACKEND"] = backend
    if backend == "jax":
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=true "
                            f"intra_op_parallelism_threads={threads}").strip()
    return env


def print_peak(args):
    """Prints the theoretical and the measured peak; (measured, theoretical) GMAC/s."""
    model, lanes, simd, fma, mhz, zen4 = cpu_info()
    available = len(os.sched_getaffinity(0))
    used = min(args.threads, available)
    theoretical = used * lanes * 2 * mhz / 1e3
    print(f"cpu: {model}, {available} CPUs available (sched_getaffinity), {simd}: {lanes} fp32 lanes, "
          f"fma flag {'yes' if fma else 'no'}")
    print(f"peak theoretical: {used} CPUs x {lanes} lanes x 2 FMA units per core (assumed) x {mhz / 1e3:.3f} GHz "
          f"(reported cpu MHz, not the boost clock) = {theoretical:.1f} GMAC/s")
    if zen4:
        print("  (AMD family 25 with AVX-512 is Zen 4: it runs AVX-512 as 2 x 256 bits, half of this per cycle)")
    lines, error = spawn(args, "peak", child_env("peak", args.threads))
    peak = 2048 ** 3 / lines[0]["seconds"] / 1e9 if lines else float("nan")
    print(f"peak measured:    numpy {lines[0]['numpy'] if lines else '?'} float32 matmul 2048x2048 @ 2048x2048, "
          f"{args.threads} threads, median of {max(3, args.repeats)}: {peak:.1f} GMAC/s "
          f"({100 * peak / theoretical:.0f}% of theoretical) {error}")
    print(f"percentages below: of the measured peak {peak:.1f} GMAC/s (of the theoretical in the fastest lines)")
    return peak, theoretical


def collect(args):
    """Runs one child per backend; {variant: {case: result}}, printing skips and errors."""
    results = {}
    for backend in args.backends:
        if backend == "torch" and not os.path.exists(args.torch_python):
            print(f"torch: skipped, no python at {args.torch_python} (make bench-peers, or --torch-python PATH)")
            continue
        lines, error = spawn(args, backend, child_env(backend, args.threads))
        for line in lines:
            if "skip" in line or "info" in line:
                print(f"{backend}: " + (f"skipped, {line['skip']}" if "skip" in line else line["info"]))
            else:
                for variant, value in line["variants"].items():
                    if "error" in value:
                        print(f"{line['case']} {variant}: {value['error']}")
                    else:
                        results.setdefault(variant, {})[line["case"]] = value
        if error:
            print(f"{backend}: child failed, {error}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 warm-up, 1 timed call, mask cases at batch 10")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--cases", default=",".join(CASES), help="subset of " + ",".join(CASES))
    parser.add_argument("--torch-python", default=DEFAULT_TORCH_PYTHON)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.cases, args.backends = ([name for name in value.split(",") if name] for value in (args.cases, args.backends))
    unknown = [name for name in args.cases if name not in CASES] + [b for b in args.backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown {unknown}: cases are {','.join(CASES)}, backends {','.join(BACKENDS)}")
    if args.child:
        return run_child(args)
    if args.quick:
        args.repeats = 1

    print(f"conv peak: {args.threads} threads, load {load1():.2f} at start, "
          + ("--quick: 1 timed call after 1 warm-up, mask cases at batch 10" if args.quick
             else f"median of {args.repeats} calls after 2 warm-ups"))
    peak, theoretical = print_peak(args)
    results = collect(args)
    columns = [variant for variant in VARIANTS if variant in results]
    rate = {v: {c: geometry(c, args.quick)[1] / r["seconds"] / 1e9 for c, r in results[v].items()} for v in columns}
    print("\nGMAC per case: " + ", ".join(f"{name} {geometry(name, args.quick)[1] / 1e9:.2f} (batch "
                                           f"{geometry(name, args.quick)[0][0]})" for name in args.cases))
    for title, scale in (("GMAC/s", 1.0), ("% of measured peak", 100.0 / peak)):
        print(f"\n{title}\n  {'case':44s}" + "".join(f"{column:>11s}" for column in columns))
        for name in args.cases:
            print(f"  {CASES[name][0]:44s}" + "".join(
                f"{rate[column][name] * scale:11.1f}" if name in rate[column] else f"{'-':>11s}" for column in columns))
    print()
    for name in args.cases:
        done = [(rate[variant][name], variant) for variant in columns if name in rate[variant]]
        if done:
            best, variant = max(done)
            print(f"  {name:7s} fastest {variant:10s} {best:7.1f} GMAC/s, {100 * best / peak:3.0f}% of measured peak, "
                  f"{100 * best / theoretical:3.0f}% of theoretical")
    print("\ncheck: shape, finite, max |difference| of sampled outputs against the first variant")
    for name in args.cases:
        done = [(variant, results[variant][name]) for variant in columns if name in results[variant]]
        if done:
            first, shape = done[0][1]["sample"], list(geometry(name, args.quick)[0])
            notes = [f"{variant} {'ok' if r['finite'] and r['shape'] == shape else 'BAD'}"
                     + (f" {max(abs(a - b) for a, b in zip(r['sample'], first)):.1e}" if r["sample"] and first else "")
                     for variant, r in done]
            print(f"  {name:7s} " + ", ".join(notes))
    print(f"\nload {load1():.2f} at end")


if __name__ == "__main__":
    main()
