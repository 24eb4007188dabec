"""Reference models and outputs of the ORIGINAL keras-maskrcnn 0.2.2 / keras-retinanet 1.0.0 / keras-resnet 0.2.0.

    benchmarks/.venv-legacy/bin/python benchmarks/legacy/reference.py --out benchmarks/legacy-reference

(`make legacy-reference` builds the venv and runs this.) The old packages run unmodified, patched at run
time by benchmarks/legacy/patches.py (imported first). Writes to --out:

  maskrcnn_resnet50.h5            keras_maskrcnn.models.backbone('resnet50').maskrcnn(num_classes=3),
                                  the single 'retinanet-mask' model of keras-maskrcnn's bin/train.py
                                  (training and prediction model at once), model.save(path)
  retinanet_resnet50_train.h5     keras_retinanet.models.backbone('resnet50').retinanet(num_classes=3)
  retinanet_resnet50_infer.h5     keras_retinanet.models.convert_model(train model, ...) with the
                                  defaults of retinanet-convert-model (nms, class-specific filter,
                                  nms 0.5, score 0.05, max_detections 300, parallel_iterations 32)
  ResNet-50-model.keras.h5        keras_resnet.models.ResNet50(Input((None, None, 3)), include_top=True,
                                  classes=1000), the published ImageNet file's name, saved as a plain
                                  functional model of its layers (keras-resnet 0.2.0's subclass would save
                                  a model_config without layers); checked as keras-retinanet's train.py
                                  uses it: retinanet.load_weights(path, by_name=True, skip_mismatch=True)
  inputs.npz                      one (1, H, W, 3) float32 array per input, preprocessed as keras-retinanet
                                  does for resnet (caffe: BGR minus [103.939, 116.779, 123.68])
  outputs_<model>_<input>.npz     model.predict_on_batch(input), one file per model and input
  manifest.json                   versions, patches, weights recipe, per model and input: shapes, detections,
                                  pyramid-level histogram of the detected boxes, mask value ranges

All four models share one set of weights, layer by layer name (the retinanet models and the ResNet
classifier take the maskrcnn model's backbone, FPN and heads; the classifier's fc1000 is its own).
The weights are random but set explicitly with numpy, every variable from a generator seeded by
crc32("<seed>/<layer>/<variable>"), then scaled on the data so that the outputs are informative:

  backbone  convs He-normal; going through the BatchNormalization layers in order, each conv kernel is
            divided by sqrt(mean per-channel variance) of its output over the calibration inputs (the photo
            at half size and the two synthetic inputs, pooled), and the BN's moving mean / variance are
            that output's per-channel mean and variance (so variance ~1), jittered; gamma U(0.5, 1)
            (U(0.1, 0.3) on the last BN of a residual branch, so the residual stream stays moderate),
            beta U(-0.2, 0.2);
  FPN       each conv scaled to output RMS 1 on the calibration inputs (P6, P7: larger, see LEVEL_RMS);
  heads     scaled on P3..P7 of the three inputs: each ReLU conv to RMS 1, regression deltas of std 0.5,
            classification logits of std 1 plus a shared bias (and per-output offsets N(0, 0.1)) that
            lets about --candidates anchor-class scores of the photo pass 0.05 before NMS, the cut placed
            in the widest gap between neighbouring logits there, so that no photo score sits on 0.05
            (the prior bias of keras-retinanet does this job for trained weights);
  masks     the mask head's convs scaled on the RoiAlign features of the photo's detections, the last
            1x1 conv to logits of std 2 centred per class, so that the 28x28 masks spread over 0..1.
The ResNet classifier's fc1000 gives logits of std 2. Every variable is checked to have been set.

Pyramid level of a box (keras-maskrcnn's RoiAlign.map_to_level): floor(1 + log2(sqrt(w h) / 224 + eps))
clipped to 0..4, i.e. P3..P7: P3 below 224, P4 224..448, P5 448..896, P6 896..1792 (only a box nearly
the whole 800 x 1067 photo), P7 above 1792 (none fits these inputs).
"""

import sys

import patches  # noqa: F401  (first: TF_USE_LEGACY_KERAS, keras -> tf_keras, and the fixes)

import argparse
import glob
import json
import math
import os
import time
import zlib

import numpy as np

LEVEL_RMS = {"P3": 1.0, "P4": 1.0, "P5": 1.0, "P6": 1.6, "P7": 2.0}
FPN_CONVS = ["C5_reduced", "C4_reduced", "C3_reduced", "P6", "P3", "P4", "P5", "P7"]
INPUT_NAMES = ["photo", "synthetic_512x640", "synthetic_333x500"]
SCORE_THRESHOLD = 0.05


def parse_args(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    parser = argparse.ArgumentParser(description="reference files of the original keras-maskrcnn / keras-retinanet")
    parser.add_argument("--out", default=os.path.join(repo, "benchmarks", "legacy-reference"))
    parser.add_argument("--images", default=None,
                        help="folder of tinycoco val2017 images (default: ../shared/data/tinycoco/images/val2017 "
                             "beside the repository, or /work/shared/...)")
    parser.add_argument("--photo", default=None, help="file name of the photo in --images (default: the first, sorted)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-classes", type=int, default=3)
    parser.add_argument("--resnet-classes", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=160,
                        help="anchor-class scores of the photo above 0.05 before NMS (sets the classification bias)")
    parser.add_argument("--threads", type=int, default=2, help="TF intra-op threads (inter-op: 1)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------------- inputs

def find_images(arg):
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    candidates = [arg] if arg else [
        os.path.join(os.path.dirname(repo), "shared", "data", "tinycoco", "images", "val2017"),
        "/work/shared/data/tinycoco/images/val2017",
    ]
    for folder in candidates:
        if folder and os.path.isdir(folder) and glob.glob(os.path.join(folder, "*.jpg")):
            return folder
    raise SystemExit(f"no tinycoco images in {candidates}; pass --images")


def synthetic_image(height, width, seed):
    """Seeded noise (smoothed) with a few filled rectangles, circles and triangles, uint8 BGR."""
    import cv2
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
    image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image.astype(np.int16) + rng.integers(-8, 9, size=image.shape), 0, 255).astype(np.uint8)
    for k in range(8):
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(min(height, width) // 10, min(height, width) // 2))
        kind = k % 3
        if kind == 0:
            cv2.rectangle(image, (x - size // 2, y - size // 3), (x + size // 2, y + size // 3), color, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), size // 2, color, -1)
        else:
            pts = np.array([[x, y - size // 2], [x - size // 2, y + size // 2], [x + size // 2, y + size // 2]], np.int32)
            cv2.fillPoly(image, [pts], color)
    return image


def make_inputs(args):
    import cv2
    from keras_retinanet.utils.image import preprocess_image, read_image_bgr

    folder = find_images(args.images)
    photo = args.photo or sorted(os.listdir(folder))[0]
    path = os.path.join(folder, photo)
    bgr = read_image_bgr(path)  # keras-retinanet's reader: PIL RGB -> BGR copy
    bgr = cv2.resize(bgr, (1067, 800))  # (width, height); cv2's default bilinear
    raw = {
        "photo": bgr,
        "synthetic_512x640": synthetic_image(512, 640, args.seed + 1),
        "synthetic_333x500": synthetic_image(333, 500, args.seed + 2),
    }
    inputs = {name: preprocess_image(image.copy(), mode="caffe")[None].astype(np.float32) for name, image in raw.items()}
    sources = {"photo": {"file": path, "resized_to_hw": [800, 1067], "resize": "cv2.resize INTER_LINEAR",
                         "reader": "keras_retinanet.utils.image.read_image_bgr"},
               "synthetic_512x640": {"seed": args.seed + 1}, "synthetic_333x500": {"seed": args.seed + 2}}
    return inputs, raw, sources


# ---------------------------------------------------------------------------------------------- weights

class Weights:
    """Sets every variable of a model with numpy, each from its own seeded generator; remembers which."""

    def __init__(self, seed):
        self.seed = seed
        self.assigned = set()

    def rng(self, *parts):
        return np.random.default_rng(zlib.crc32("/".join([str(self.seed)] + [str(p) for p in parts]).encode()))

    def set(self, variable, value):
        value = np.asarray(value, dtype=variable.dtype.as_numpy_dtype)
        assert value.shape == tuple(variable.shape), (variable.name, value.shape, variable.shape)
        assert np.all(np.isfinite(value)), variable.name
        variable.assign(value)
        self.assigned.add(id(variable))

    def conv(self, layer, bias_std=0.02):
        kernel = layer.kernel
        fan_in = int(np.prod(kernel.shape[:-1]))
        self.set(kernel, self.rng(layer.name, "kernel").normal(0.0, math.sqrt(2.0 / fan_in), size=kernel.shape))
        if layer.use_bias:
            self.set(layer.bias, self.rng(layer.name, "bias").normal(0.0, bias_std, size=layer.bias.shape))

    def scale_conv(self, layer, factor):
        self.set(layer.kernel, layer.kernel.numpy() * factor)
        if layer.use_bias:
            self.set(layer.bias, layer.bias.numpy() * factor)

    def batch_norm(self, layer, mean, var):
        channels = mean.shape[0]
        last_of_branch = layer.name.endswith("branch2c")
        low, high = (0.1, 0.3) if last_of_branch else (0.5, 1.0)
        self.set(layer.gamma, self.rng(layer.name, "gamma").uniform(low, high, size=channels))
        self.set(layer.beta, self.rng(layer.name, "beta").uniform(-0.2, 0.2, size=channels))
        jitter = self.rng(layer.name, "moving")
        std = np.sqrt(var)
        self.set(layer.moving_mean, mean + 0.05 * std * jitter.normal(size=channels))
        self.set(layer.moving_variance, var * np.exp(0.1 * jitter.normal(size=channels)))

    def check_all(self, model):
        missing = [w.name for w in model.weights if id(w) not in self.assigned]
        if missing:
            raise RuntimeError(f"{model.name}: {len(missing)} variables not set: {missing[:10]}")


def inbound(layer):
    node = layer._inbound_nodes[0]
    layers = node.inbound_layers
    return layers if isinstance(layers, list) else [layers]


def predict(model, x):
    out = model.predict_on_batch(x)
    return out if isinstance(out, list) else [out]


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def pooled_moments(model, calibration):
    """Per-channel mean and variance of model's output over all pixels of all calibration images."""
    total, total_sq, count = 0.0, 0.0, 0
    for x in calibration:
        y = predict(model, x)[0].astype(np.float64)
        y = y.reshape(-1, y.shape[-1])
        total, total_sq, count = total + y.sum(axis=0), total_sq + np.square(y).sum(axis=0), count + y.shape[0]
    mean = total / count
    return mean, np.maximum(total_sq / count - np.square(mean), 0.0)


def init_maskrcnn(model, weights, calibration, photo, others, args, log):
    """Seeds and scales all weights of the keras-maskrcnn model (see the module docstring).

    calibration: list of (1, H, W, 3) inputs for the backbone and FPN statistics; photo: the input whose
    detections set the classification bias and the mask head; others: further inputs pooled with the
    photo for the heads' scales.
    """
    import tf_keras as keras

    image = model.inputs[0]
    # backbone: BN layers in topological order, each with the conv that feeds it
    bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    start = time.perf_counter()
    for layer in model.layers:
        if type(layer).__name__ == "Conv2D" and not layer.use_bias:
            weights.conv(layer)
    for index, bn in enumerate(bns):
        (conv,) = inbound(bn)
        assert type(conv).__name__ == "Conv2D", (bn.name, conv.name)
        mean, var = pooled_moments(keras.models.Model(image, bn.input), calibration)
        scale = 1.0 / math.sqrt(max(float(var.mean()), 1e-12))
        weights.scale_conv(conv, scale)
        mean, var = mean * scale, var * scale * scale
        var = np.maximum(var, 1e-2)
        weights.batch_norm(bn, mean, var)
    log(f"  backbone: {len(bns)} BN layers calibrated in {time.perf_counter() - start:.0f} s")

    # FPN
    for name in FPN_CONVS:
        layer = model.get_layer(name)
        weights.conv(layer)
        mean, var = pooled_moments(keras.models.Model(image, layer.output), calibration)
        weights.scale_conv(layer, LEVEL_RMS.get(name, 1.0) / math.sqrt(float(np.mean(var + np.square(mean)))))
    pyramid = keras.models.Model(image, [model.get_layer(p).output for p in ["P3", "P4", "P5", "P6", "P7"]])
    levels = predict(pyramid, photo)  # the photo's P3..P7 first, then those of the other inputs
    for x in others:
        levels += predict(pyramid, x)
    log("  FPN output RMS on the photo: " + ", ".join(f"P{3 + i} {rms(x):.2f}" for i, x in enumerate(levels[:5])))

    # heads, applied eagerly to P3..P7 of the photo and the other inputs
    def head(submodel, final_std, final_bias=None):
        xs = [x for x in levels]
        convs = [layer for layer in submodel.layers if type(layer).__name__ == "Conv2D"]
        for layer in convs[:-1]:
            weights.conv(layer)
            ys = [layer(x).numpy() for x in xs]
            factor = 1.0 / rms(np.concatenate([y.ravel() for y in ys]))
            weights.scale_conv(layer, factor)
            xs = [y * factor for y in ys]  # ReLU is positively homogeneous
        final = convs[-1]
        weights.conv(final, bias_std=0.0)
        weights.set(final.bias, np.zeros(final.bias.shape))
        logits = [final(x).numpy() for x in xs]
        factor = final_std / float(np.concatenate([z.ravel() for z in logits]).std())
        weights.scale_conv(final, factor)
        logits = [z * factor for z in logits]
        if final_bias is not None:
            weights.set(final.bias, final_bias(logits, final))
        return logits

    head(model.get_layer("regression_submodel"), 0.5)

    def classification_bias(logits, final):
        offsets = weights.rng(final.name, "bias").normal(0.0, 0.1, size=final.bias.shape)
        # scores sigmoid(z + b) > 0.05  <=>  z > logit(0.05) - b: about `candidates` values above it, the cut
        # in the middle of the widest gap between neighbouring logits near there, so that no score of the
        # photo lies close to 0.05 (a reimplementation's rounding cannot move a box across the threshold)
        shifted = np.concatenate([(z + offsets).ravel() for z in logits[:5]])
        top = np.sort(shifted)[::-1][: 2 * args.candidates + 1]
        window = slice(args.candidates // 2, min(len(top) - 1, args.candidates * 3 // 2))
        gaps = top[:-1] - top[1:]
        k = window.start + int(np.argmax(gaps[window]))
        cut = 0.5 * (top[k] + top[k + 1])
        shared = math.log(SCORE_THRESHOLD / (1 - SCORE_THRESHOLD)) - cut
        margin.update(candidates=k + 1, logit_gap=float(gaps[k]))
        return shared + offsets

    margin = {}
    head(model.get_layer("classification_submodel"), 1.0, classification_bias)
    log(f"  classification cut: {margin['candidates']} photo scores above 0.05, logit gap {margin['logit_gap']:.4f} "
        "around the cut")
    log(f"  heads set; classification bias ~{float(model.get_layer('classification_submodel').get_layer('pyramid_classification').bias.numpy().mean()):.2f}")

    # mask head on the RoiAlign features of the photo's detections
    roi = model.get_layer("roi_align")
    scores_layer = model.get_layer("filtered_detections")
    pooled, scores = predict(keras.models.Model(image, [roi.output, scores_layer.output[1]]), photo)
    rows = scores[0] > -1
    log(f"  mask head calibrated on {int(rows.sum())} RoIs")
    x = pooled[:, rows] if rows.any() else pooled[:, :8]
    mask_model = model.get_layer("mask_submodel")
    for layer in mask_model.layers[1:]:
        kind = type(layer.layer).__name__ if hasattr(layer, "layer") else type(layer).__name__
        if kind != "Conv2D":
            x = layer(x).numpy()
            continue
        conv = layer.layer
        weights.conv(conv)
        if conv.activation.__name__ == "sigmoid":
            kernel = conv.kernel.numpy()[0, 0]
            logits = np.einsum("bnhwc,ck->bnhwk", x, kernel).reshape(-1, kernel.shape[-1])
            factor = 2.0 / float(logits.std(axis=0).mean())
            weights.set(conv.kernel, conv.kernel.numpy() * factor)
            # centred per class (post-ReLU inputs give every class a large mean logit), then a small offset
            offsets = weights.rng(conv.name, "bias").normal(0.0, 0.3, size=conv.bias.shape)
            weights.set(conv.bias, offsets - logits.mean(axis=0) * factor)
        else:
            y = layer(x).numpy()
            factor = 1.0 / rms(y)
            weights.scale_conv(conv, factor)
            x = y * factor
    weights.check_all(model)
    return margin


def copy_weights(source, target, weights):
    """Copies the weights of every layer of target that source has by name (nested submodels whole)."""
    names = {layer.name for layer in source.layers}
    count = 0
    for layer in target.layers:
        if layer.weights and layer.name in names:
            for variable, value in zip(layer.weights, source.get_layer(layer.name).get_weights()):
                weights.set(variable, value)
            count += 1
    return count


def init_resnet_classifier(model, source, weights, calibration):
    """The classifier takes source's backbone weights; its fc1000 gives logits of std 2 on the calibration inputs."""
    import tf_keras as keras
    copied = copy_weights(source, model, weights)
    fc = model.get_layer("fc1000")
    pooled = np.concatenate([predict(keras.models.Model(model.inputs[0], model.get_layer("pool5").output), x)[0]
                             for x in calibration])
    kernel = weights.rng(fc.name, "kernel").normal(0.0, 1.0, size=fc.kernel.shape)
    logits = pooled @ kernel
    weights.set(fc.kernel, kernel * (2.0 / float(logits.std())))
    weights.set(fc.bias, weights.rng(fc.name, "bias").normal(0.0, 0.1, size=fc.bias.shape))
    weights.check_all(model)
    return copied


# ---------------------------------------------------------------------------------------------- outputs

def box_levels(boxes):
    """keras-maskrcnn's RoiAlign.map_to_level in numpy: 0..4 for P3..P7."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    size = np.sqrt(np.maximum(w * h, 0.0))
    with np.errstate(divide="ignore"):
        levels = np.floor(1 + np.log2(size / 224 + 1e-7))
    return np.clip(levels, 0, 4).astype(int)


def summarize_detections(boxes, scores, labels, masks=None):
    valid = labels[0] != -1
    above = scores[0] > SCORE_THRESHOLD
    info = {"detections_label_not_-1": int(valid.sum()), "detections_score_gt_0.05": int(above.sum()),
            "score_range": [float(scores[0][valid].min()), float(scores[0][valid].max())] if valid.any() else None,
            "labels_histogram": {str(c): int((labels[0][valid] == c).sum()) for c in np.unique(labels[0][valid])}}
    if valid.any():
        levels = box_levels(boxes[0][valid])
        info["level_histogram"] = {f"P{3 + k}": int((levels == k).sum()) for k in range(5)}
        sizes = np.sqrt(np.maximum((boxes[0][valid, 2] - boxes[0][valid, 0]) * (boxes[0][valid, 3] - boxes[0][valid, 1]), 0))
        info["box_sqrt_area_range"] = [float(sizes.min()), float(sizes.max())]
    if masks is not None and valid.any():
        rows = masks[0][valid]
        own = rows[np.arange(rows.shape[0]), :, :, labels[0][valid]]
        info["mask_range_all_classes"] = [float(rows.min()), float(rows.max())]
        info["mask_range_own_class"] = [float(own.min()), float(own.max())]
        info["mask_own_class_fraction_gt_0.5"] = float((own > 0.5).mean())
        info["mask_own_class_quantiles_5_50_95"] = [float(q) for q in np.quantile(own, [0.05, 0.5, 0.95])]
    return info


def check_finite(name, arrays):
    for key, value in arrays.items():
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise RuntimeError(f"{name}: {key} has NaN or inf")


# Names of the outputs of predict_on_batch, by model kind (None: not saved; maskrcnn's boxes_masks is
# boxes and masks concatenated, for its loss).
OUTPUT_KEYS = {
    "maskrcnn": ["regression", "classification", None, "boxes", "scores", "labels", "masks"],
    "retinanet_infer": ["boxes", "scores", "labels"],
    "retinanet_train": ["regression", "classification"],
    "classifier": ["probabilities"],
}
MODEL_KINDS = {"maskrcnn_resnet50": "maskrcnn", "retinanet_resnet50_infer": "retinanet_infer",
               "retinanet_resnet50_train": "retinanet_train", "resnet50_classifier": "classifier"}


def model_kind(model):
    """The OUTPUT_KEYS kind of a (loaded) model, from its layers and outputs."""
    names = {layer.name for layer in model.layers}
    if "mask_submodel" in names:
        return "maskrcnn"
    if "filtered_detections" in names:
        return "retinanet_infer"
    if "regression" in model.output_names:
        return "retinanet_train"
    return "classifier"


def output_arrays(kind, outputs):
    """predict_on_batch's outputs as {name: array}, named by OUTPUT_KEYS[kind]."""
    keys = OUTPUT_KEYS[kind]
    if len(keys) != len(outputs):
        raise ValueError(f"{kind}: expected {len(keys)} outputs, got {len(outputs)}")
    return {k: np.asarray(v) for k, v in zip(keys, outputs) if k is not None}


def run_outputs(model_name, model, inputs, out, manifest_entry, log):
    entry = manifest_entry.setdefault("outputs", {})
    for input_name, x in inputs.items():
        start = time.perf_counter()
        outputs = predict(model, x)
        first = time.perf_counter() - start
        assert model_kind(model) == MODEL_KINDS[model_name], (model_name, model_kind(model))
        arrays = output_arrays(MODEL_KINDS[model_name], outputs)
        check_finite(f"{model_name}/{input_name}", arrays)
        path = os.path.join(out, f"outputs_{model_name}_{input_name}.npz")
        np.savez_compressed(path, **arrays)
        info = {"file": os.path.basename(path), "first_predict_seconds": round(first, 3),
                "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}
        if "boxes" in arrays:
            info.update(summarize_detections(arrays["boxes"], arrays["scores"], arrays["labels"], arrays.get("masks")))
        if "classification" in arrays:
            c = arrays["classification"]
            info["classification_max"] = float(c.max())
            info["anchor_class_scores_gt_0.05"] = int((c > SCORE_THRESHOLD).sum())
            info["closest_score_to_0.05"] = float(c.ravel()[np.argmin(np.abs(c.ravel() - SCORE_THRESHOLD))])
        if "regression" in arrays:
            info["regression_std"] = float(arrays["regression"].std())
        if "probabilities" in arrays:
            p = arrays["probabilities"]
            info["probability_max"] = float(p.max())
            info["argmax"] = int(p.argmax())
        entry[input_name] = info
        log(f"  {model_name} / {input_name}: " + ", ".join(
            f"{k}={info[k]}" for k in ["detections_label_not_-1", "level_histogram", "mask_range_own_class",
                                        "anchor_class_scores_gt_0.05", "probability_max"] if k in info)
            + f" ({first:.1f} s)")


def time_predict(model, x, runs=3):
    model.predict_on_batch(x)  # warm
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - start)
    return times


# ------------------------------------------------------------------------------------------------- main

def versions():
    import importlib.metadata as md
    import tensorflow as tf
    import tf_keras
    result = {"python": sys.version.split()[0], "tensorflow": tf.__version__, "tf_keras": tf_keras.__version__}
    for package in ["keras-retinanet", "keras-resnet", "keras-maskrcnn", "numpy", "h5py", "opencv-python-headless"]:
        try:
            result[package.replace("-", "_")] = md.version(package)
        except md.PackageNotFoundError:
            result[package.replace("-", "_")] = None
    return result


def main(argv=None):
    args = parse_args(argv)

    def log(message):
        print(message, flush=True)

    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import tf_keras as keras
    import keras_maskrcnn.models
    import keras_resnet.models
    import keras_retinanet.models

    out = args.out
    os.makedirs(out, exist_ok=True)
    np.random.seed(args.seed)
    tf.random.set_seed(args.seed)
    keras.utils.set_random_seed(args.seed)

    inputs, raw, sources = make_inputs(args)
    np.savez_compressed(os.path.join(out, "inputs.npz"), **inputs)
    log(f"inputs: " + ", ".join(f"{k} {list(v.shape)}" for k, v in inputs.items()) + f" (photo {sources['photo']['file']})")
    import cv2
    from keras_retinanet.utils.image import preprocess_image
    half = preprocess_image(cv2.resize(raw["photo"], (533, 400)), mode="caffe")[None].astype(np.float32)
    calibration = [half, inputs["synthetic_512x640"], inputs["synthetic_333x500"]]

    manifest = {"versions": versions(), "patches": patches.PATCHES, "seed": args.seed,
                "score_threshold": SCORE_THRESHOLD, "inputs": {}, "models": {},
                "weights": ("numpy-seeded per variable (crc32 of seed/layer/variable), data-scaled: see "
                            "benchmarks/legacy/reference.py; all four files share weights by layer name"),
                "level_rule": "floor(1 + log2(sqrt(w*h)/224 + eps)) clipped to 0..4 = P3..P7 (RoiAlign.map_to_level)",
                "classification_storage": "float32 for every input (800x1067: 160956 anchors x 3 classes, 2 MB)",
                "notes": [
                    "all four files share their weights by layer name (the classifier's fc1000 is its own)",
                    "keras-maskrcnn 0.2.2 runs here on keras-retinanet 1.0.0, as installed; it was released "
                    "against keras-retinanet 0.5.x, whose ClipBoxes clipped x to [0, width] and y to [0, height], "
                    "1.0.0's to [0, width - 1] and [0, height - 1] (FilterDetections, anchors, RegressBoxes, "
                    "the FPN and the heads are the same math)",
                    "RoiAlign levels P6 (sqrt(wh) >= 896) and P7 (>= 1792) are out of reach of these inputs' boxes",
                    "synthetic_512x640 fills maskrcnn's 100 detection rows (no padding); the photo and "
                    "synthetic_333x500 leave padded rows (score -1, label -1)",
                    "predict times in this manifest are of a shared 2-core machine: indicative only",
                ]}
    for name, x in inputs.items():
        manifest["inputs"][name] = dict(shape=list(x.shape), dtype=str(x.dtype), **sources[name])

    weights = Weights(args.seed)

    # 1. keras-maskrcnn
    log("building keras_maskrcnn.models.backbone('resnet50').maskrcnn(num_classes=%d)" % args.num_classes)
    maskrcnn = keras_maskrcnn.models.backbone("resnet50").maskrcnn(num_classes=args.num_classes)
    manifest["classification_cut"] = init_maskrcnn(maskrcnn, weights, calibration, inputs["photo"], calibration[1:],
                                                   args, log)
    models = [("maskrcnn_resnet50", maskrcnn, {"builder": "keras_maskrcnn.models.backbone('resnet50').maskrcnn"
                                                            f"(num_classes={args.num_classes})"})]

    # 2. keras-retinanet training and inference models
    log("building keras_retinanet.models.backbone('resnet50').retinanet(num_classes=%d)" % args.num_classes)
    train = keras_retinanet.models.backbone("resnet50").retinanet(num_classes=args.num_classes)
    copy_weights(maskrcnn, train, weights)
    weights.check_all(train)
    infer = keras_retinanet.models.convert_model(train, nms=True, class_specific_filter=True, anchor_params=None,
                                                 pyramid_levels=None, nms_threshold=0.5, score_threshold=0.05,
                                                 max_detections=300, parallel_iterations=32)
    models.append(("retinanet_resnet50_train", train,
                   {"builder": f"keras_retinanet.models.backbone('resnet50').retinanet(num_classes={args.num_classes})"}))
    models.append(("retinanet_resnet50_infer", infer,
                   {"builder": "keras_retinanet.models.convert_model(train, nms=True, class_specific_filter=True, "
                               "nms_threshold=0.5, score_threshold=0.05, max_detections=300, parallel_iterations=32) "
                               "(retinanet-convert-model's defaults)"}))

    # 3. keras-resnet classifier
    log("building keras_resnet.models.ResNet50(inputs, include_top=True, classes=%d)" % args.resnet_classes)
    resnet = keras_resnet.models.ResNet50(keras.layers.Input(shape=(None, None, 3)), include_top=True,
                                          classes=args.resnet_classes)
    init_resnet_classifier(resnet, maskrcnn, weights, calibration)
    # keras-resnet 0.2.0's ResNet2D50 is a keras.Model subclass: saved as it is, its model_config holds only
    # {name, trainable} (no layers) and load_model cannot revive it. The same layers as a plain functional
    # model save a full layer config, as the published file (made by keras-resnet's earlier functions) has.
    resnet = keras.models.Model(inputs=resnet.inputs, outputs=resnet.outputs, name="resnet50")
    models.append(("resnet50_classifier", resnet,
                   {"builder": f"keras_resnet.models.ResNet50(Input((None, None, 3)), include_top=True, "
                               f"classes={args.resnet_classes}), saved as keras.models.Model(its inputs, its outputs)",
                    "file_name_note": "the published ImageNet file's name"}))

    files = {"maskrcnn_resnet50": "maskrcnn_resnet50.h5", "retinanet_resnet50_train": "retinanet_resnet50_train.h5",
             "retinanet_resnet50_infer": "retinanet_resnet50_infer.h5", "resnet50_classifier": "ResNet-50-model.keras.h5"}
    for name, model, entry in models:
        path = os.path.join(out, files[name])
        model.save(path)
        entry.update(file=files[name], model_name=model.name, num_classes=args.num_classes if name != "resnet50_classifier"
                     else args.resnet_classes, output_names=list(model.output_names),
                     parameters=int(model.count_params()), bytes=os.path.getsize(path))
        manifest["models"][name] = entry
        log(f"saved {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
        run_outputs(name, model, inputs, out, entry, log)

    # how keras-retinanet's train.py uses the ImageNet file: load_weights(by_name=True, skip_mismatch=True)
    fresh = keras_retinanet.models.backbone("resnet50").retinanet(num_classes=args.num_classes)
    fresh.load_weights(os.path.join(out, files["resnet50_classifier"]), by_name=True, skip_mismatch=True)
    backbone_layers = [layer for layer in fresh.layers if layer.weights and layer.name in {l.name for l in resnet.layers}]
    same = sum(all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), maskrcnn.get_layer(layer.name).get_weights()))
               for layer in backbone_layers)
    manifest["models"]["resnet50_classifier"]["load_weights_by_name_into_retinanet"] = {
        "layers_with_weights_matched": len(backbone_layers), "equal_to_maskrcnn_backbone": int(same)}
    log(f"ResNet-50-model.keras.h5 -> retinanet load_weights(by_name=True): {same}/{len(backbone_layers)} backbone layers equal")
    del fresh

    # the prediction time of the original at 800x1067 (same process, after the first call)
    times = time_predict(maskrcnn, inputs["photo"])
    manifest["models"]["maskrcnn_resnet50"]["predict_seconds_photo_warm"] = [round(t, 3) for t in times]
    log(f"maskrcnn predict_on_batch 800x1067, warm: " + ", ".join(f"{t:.2f}" for t in times) + " s")

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
    log(f"reference files written to {os.path.abspath(out)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
