"""Our `load_model` against the original code's own outputs, on the files `make legacy-reference` wrote.

    .venv/bin/python benchmarks/legacy/parity.py [--reference benchmarks/legacy-reference] [--json]
    KERAS_BACKEND=jax .venv/bin/python benchmarks/legacy/parity.py

For every model file and input of the reference's manifest.json: our outputs of `predict_on_batch`
on the same preprocessed input, compared with `keras_maskrcnn.utils.compare.compare_detections`
(detections paired one to one; scores within 1e-4, boxes within 1e-2 px, masks of the detected
rows within 1e-3), plus the largest differences of the raw regression and classification where the
reference saved them, and whether the detections come in the very same order. Prints a table, or
with --json one JSON object per line; exits 1 if any comparison differs.
"""

import argparse
import json
import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_REFERENCE = os.path.join(os.path.dirname(HERE), "legacy-reference")
TOLERANCES = dict(score_tol=1e-4, box_tol=1e-2, mask_tol=1e-3)


def compare_file(model, reference, entry, inputs):
    """Rows (dicts) comparing `model` with the reference outputs of one manifest entry."""
    from keras_maskrcnn.utils.compare import compare_detections

    rows = []
    for key, output in entry["outputs"].items():
        expected = np.load(os.path.join(reference, output["file"]))
        got = [np.asarray(o) for o in model.predict_on_batch(inputs[key])]
        row = dict(model=entry["file"], input=key, shape=list(inputs[key].shape[1:3]))
        if "regression" in expected:
            row["regression"] = float(np.abs(got[0] - expected["regression"]).max())
        if "classification" in expected:
            row["classification"] = float(np.abs(got[1] - expected["classification"].astype(np.float32)).max())
        if "scores" in expected:
            names = ("boxes", "scores", "labels", "masks") if "masks" in expected else ("boxes", "scores", "labels")
            ours = got[-len(names):]
            report = compare_detections([expected[n] for n in names], ours, **TOLERANCES)
            count = report["count"]
            same_order = bool(np.array_equal(ours[2][0][:count], expected["labels"][0][:count])
                              and np.allclose(ours[1][0][:count], expected["scores"][0][:count], atol=1e-4))
            row.update(detections=count, ours=report["other_count"], same=report["same"], same_order=same_order,
                       scores=report["max_score"], boxes=report["max_box"], masks=report["max_mask"])
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=DEFAULT_REFERENCE, help="folder written by make legacy-reference")
    parser.add_argument("--json", action="store_true", help="one JSON object per comparison")
    args = parser.parse_args(argv)
    manifest_path = os.path.join(args.reference, "manifest.json")
    if not os.path.isfile(manifest_path):
        parser.error(f"{manifest_path} does not exist: run `make legacy-reference` first")
    manifest = json.load(open(manifest_path))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from keras_maskrcnn.models import load_model

    inputs = np.load(os.path.join(args.reference, "inputs.npz"))
    rows = []
    for name, entry in manifest["models"].items():
        if "outputs" not in entry or entry.get("num_classes") == 1000:
            continue  # the keras-resnet classifier: backbone weights, no detector
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load_model(os.path.join(args.reference, entry["file"]), backbone_name="resnet50")
        rows += compare_file(model, args.reference, entry, inputs)
    backend = keras.backend.backend()
    for row in rows:
        row["backend"] = backend
        if args.json:
            print(json.dumps(row))
    if not args.json:
        print(f"backend {backend}; reference {args.reference} ({manifest['versions']})")
        print(f"{'file':32s} {'input':18s} {'dets':>5s} {'ours':>5s} {'same':>5s} {'order':>6s} "
              f"{'scores':>9s} {'boxes px':>9s} {'masks':>9s} {'regress':>9s} {'classif':>9s}")
        for row in rows:
            cell = lambda key: f"{row[key]:9.2e}" if row.get(key) is not None else f"{'-':>9s}"  # noqa: E731
            print(f"{row['model']:32s} {row['input']:18s} {row.get('detections', '-'):>5} {row.get('ours', '-'):>5} "
                  f"{str(row.get('same', '-')):>5s} {str(row.get('same_order', '-')):>6s} {cell('scores')} "
                  f"{cell('boxes')} {cell('masks')} {cell('regression')} {cell('classification')}")
    return 0 if all(row.get("same", True) for row in rows) else 1


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(HERE))
    sys.exit(main())
