"""Test-wide settings (quiet TensorFlow logs, TensorFlow backend unless the caller chose another)
and the fixtures several test files share."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

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
