"""The runtime wrappers' settings, on a model of a few operations written here (no export)."""

import numpy as np
import openvino as ov  # in the test extra: missing is an error, not a skip
import pytest
from openvino import opset13 as ops

from keras_maskrcnn import runtimes


@pytest.fixture
def tiny_openvino(tmp_path):
    image = ops.parameter([-1, -1, -1, 3], np.float32, name="image")
    outputs = []
    for name, node in (("boxes", ops.relu(image)), ("scores", ops.sigmoid(image)), ("labels", ops.abs(image)),
                       ("masks", ops.negative(image))):
        node.output(0).set_names({name})
        outputs.append(ops.result(node))
    path = str(tmp_path / "tiny.xml")
    ov.save_model(ov.Model(outputs, [image], "tiny"), path)
    return path


def test_openvino_threads_are_not_pinned_unless_asked(tiny_openvino):
    artifact = runtimes.load_artifact(tiny_openvino, threads=1)
    assert artifact._compiled.get_property("ENABLE_CPU_PINNING") is False
    assert artifact._compiled.get_property("INFERENCE_NUM_THREADS") == 1
    batch = np.linspace(-1, 1, 2 * 3 * 4 * 3, dtype=np.float32).reshape(2, 3, 4, 3)
    boxes, scores, labels, masks = artifact.predict_on_batch(batch)
    np.testing.assert_allclose(boxes, np.maximum(batch, 0))
    np.testing.assert_allclose(masks, -batch)
    pinned = runtimes.OpenVinoArtifact(tiny_openvino, pin_threads=True)  # OpenVINO's own default
    assert pinned._compiled.get_property("ENABLE_CPU_PINNING") == ov.Core().get_property("CPU", "ENABLE_CPU_PINNING")
