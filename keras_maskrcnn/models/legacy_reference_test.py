"""Parity with the original code: `benchmarks/legacy/parity.py` on the files `make legacy-reference`
wrote with keras-maskrcnn 0.2.2 / keras-retinanet 1.0.0 themselves (skipped where they are absent, as
in CI). The bounds are the issue's: same detections, equal labels, scores within 1e-4, boxes within
1e-2 px, masks of the detected rows within 1e-3."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("KERAS_MASKRCNN_LEGACY_REFERENCE", ROOT / "benchmarks" / "legacy-reference"))
pytestmark = pytest.mark.skipif(not (REFERENCE / "manifest.json").exists(),
                                reason=f"no reference files in {REFERENCE} (make legacy-reference writes them)")


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_load_model_matches_the_original_code(backend):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "legacy" / "parity.py"), "--json",
                             "--reference", str(REFERENCE)], capture_output=True, text=True, env=env, timeout=1200)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert rows, result.stderr[-3000:]
    assert {row["backend"] for row in rows} == {backend}
    detections = [row for row in rows if "detections" in row]
    assert {row["model"] for row in detections} >= {"maskrcnn_resnet50.h5", "retinanet_resnet50_infer.h5"}
    for row in detections:
        assert row["detections"] > 0 and row["ours"] == row["detections"], row
        assert row["same"], row
        assert row["scores"] <= 1e-4 and row["boxes"] <= 1e-2, row
        assert row.get("masks") is None or row["masks"] <= 1e-3, row
    for row in rows:
        assert row.get("regression", 0) <= 1e-3 and row.get("classification", 0) <= 1e-4, row
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_synthetic_files_of_the_tests_are_laid_out_as_a_real_one(legacy_h5):
    """tests/legacy_h5_writer.py's tf-keras layout against the file the original code wrote: the same
    layers hold weights, under the same weight names."""
    import h5py

    def weights(path):
        with h5py.File(path, "r") as f:
            group = f["model_weights"]
            return {name: [n.decode() if isinstance(n, bytes) else n for n in group[name].attrs["weight_names"]]
                    for name in (n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"])
                    if len(group[name].attrs["weight_names"])}

    real = weights(REFERENCE / "maskrcnn_resnet50.h5")
    synthetic = weights(legacy_h5["maskrcnn"]["tf-keras"])
    assert set(synthetic) == set(real)
    for name in ("bn_conv1", "res5c_branch2c", "regression_submodel", "classification_submodel", "mask_submodel"):
        assert synthetic[name] == real[name], name
