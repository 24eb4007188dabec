"""Test-wide settings (quiet TensorFlow logs, TensorFlow backend unless the caller chose another)
and the fixtures several test files share."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# XLA (JAX's compiler, and TensorFlow's where it compiles) optimises less: a JAX training step of
# the tests' small models compiles in half the time (10 s instead of 21 s for VGG16 at 64 px).
# The tests compare values, not speed; their subprocesses inherit this.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# Under pytest-xdist (`make test` runs two workers on two cores) TensorFlow gets one thread per
# pool, in the workers and in the subprocesses they start, so that both ends of a
# reload-in-a-fresh-process test sum in the same order. With the default (a thread per core in
# each pool of each process) the processes' pools spin against each other: two copies of the
# 20-step training test side by side took 69 s and 129 s of CPU, against 53 s and 102 s with one.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

import pytest  # noqa: E402  (after the environment is set, before Keras is imported)


@pytest.fixture(scope="session")
def small_shapes(tmp_path_factory):
    """Shapes train (4 images) and val (2 images) sets at 64 px and an anchor config suited to their
    small objects: dict(root, train, classes, val, config, val_images). Tests write below root only
    into folders of their own."""
    from keras_maskrcnn.datasets.shapes import make_shapes_dataset

    root = tmp_path_factory.mktemp("shapes")
    train_csv, classes_csv = make_shapes_dataset(str(root / "train"), images=4, size=64, seed=1)
    val_csv, _ = make_shapes_dataset(str(root / "val"), images=2, size=64, seed=2)
    config = root / "anchors.ini"
    config.write_text("[anchor_parameters]\nsizes = 16 32 64 128 256\nstrides = 8 16 32 64 128\n"
                      "ratios = 0.5 1 2\nscales = 1 1.2 1.6\n")
    return dict(root=root, train=train_csv, classes=classes_csv, val=val_csv, config=str(config),
                val_images=str(root / "val" / "images"))


@pytest.fixture
def no_model_building(monkeypatch):
    """Makes building a model fail loudly, so argument errors are shown to come first."""
    from keras_maskrcnn.models.backbone import Backbone

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the arguments were checked")

    monkeypatch.setattr(Backbone, "maskrcnn", refuse)


@pytest.fixture(scope="session")
def legacy_h5(tmp_path_factory):
    """Old-format `.h5` files written by tests/legacy_h5_writer.py from models rebuilt here
    (ResNet50, 3 classes, anchors with 4 ratios as keras-retinanet's test config has them):
    dict(model, maskrcnn (layout -> path), retinanet_inference, retinanet_training, image, outputs,
    expected: an .npz of image, boxes, scores, labels, masks for other processes).
    The final classification conv is scaled so that random weights give detections on `image`."""
    import numpy as np

    from keras_maskrcnn.models.legacy import legacy_maskrcnn, legacy_retinanet_bbox
    from keras_maskrcnn.utils.anchors import AnchorParameters
    from tests.legacy_h5_writer import LAYOUTS, write_legacy_h5

    root = tmp_path_factory.mktemp("legacy")
    anchors = AnchorParameters(ratios=(0.5, 1, 2, 3), scales=(1, 1.2, 1.6))
    rng = np.random.default_rng(0)

    def informative(model):
        head = model.get_layer("classification_submodel").get_layer("pyramid_classification")
        kernel, bias = head.get_weights()
        head.set_weights([kernel * 2.5, np.full_like(bias, -3.5)])
        return model

    model = informative(legacy_maskrcnn(3, anchor_params=anchors))
    image = rng.uniform(-120, 140, size=(1, 96, 128, 3)).astype("float32")
    files = {layout: write_legacy_h5(model, str(root / f"maskrcnn_{layout}.h5"), layout) for layout in LAYOUTS}
    boxes = informative(legacy_retinanet_bbox(3, anchor_params=anchors))
    inference = write_legacy_h5(boxes, str(root / "retinanet_inference.h5"), "tf-keras")
    training = write_legacy_h5(boxes, str(root / "retinanet_training.h5"), "keras-2.2",
                               drop_layers=("filtered_detections",))
    outputs = model.predict_on_batch(image)
    expected = str(root / "expected.npz")
    np.savez(expected, image=image, boxes=outputs[-4], scores=outputs[-3], labels=outputs[-2], masks=outputs[-1])
    return dict(model=model, maskrcnn=files, retinanet=boxes, retinanet_inference=inference,
                retinanet_training=training, image=image, outputs=outputs, expected=expected,
                retinanet_outputs=boxes.predict_on_batch(image))


# `make test` runs the files on two workers, a file at a time (--dist loadfile), in the order of
# the collection (--no-loadscope-reorder). A few files hold most of the suite's time; started last,
# one of them keeps one worker busy for minutes while the other has nothing left. So the files
# known to be slowest go first (longest first), and the many quick files fill in at the end.
SLOWEST_FILES = (
    "tests/test_export.py",
    "tests/test_int8.py",
    "keras_maskrcnn/utils/multi_worker_test.py",
    "keras_maskrcnn/utils/distribution_test.py",
    "tests/test_readme.py",
    "keras_maskrcnn/models/maskrcnn_test.py",
    "keras_maskrcnn/models/legacy_test.py",
    "tests/test_kill_resume.py",
    "tests/test_legacy_cli.py",
    "tests/test_cli.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: index for index, path in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
