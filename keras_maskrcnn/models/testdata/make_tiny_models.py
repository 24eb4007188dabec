"""Writes the tiny model files of saved_before_test.py and their predictions with the keras_maskrcnn
that is imported (put an older version first on PYTHONPATH to make files of that version):

    python keras_maskrcnn/models/testdata/make_tiny_models.py keras_maskrcnn/models/testdata

Five strided 8-channel convolutions stand for the backbone, so each file takes about 70 KB; the
archives are repacked with deflate (Keras stores them uncompressed and reads either)."""
import os, sys
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras, numpy as np
import keras_maskrcnn
print("keras_maskrcnn from", os.path.dirname(keras_maskrcnn.__file__))
from keras_maskrcnn.models import save_model, training_model
from keras_maskrcnn.models.maskrcnn import maskrcnn
from keras_maskrcnn.utils.anchors import AnchorParameters

out = sys.argv[1]
anchors = AnchorParameters(sizes=(16, 32, 64, 128, 256))

def tiny(legacy=False, **kw):
    keras.utils.set_random_seed(3)
    image = keras.Input((None, None, 3), name="image")
    x = image
    feats = []
    for i, f in enumerate((8, 8, 8, 8, 8)):
        x = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", name=f"tiny_{i}")(x)
        feats.append(x)
    return maskrcnn(image, feats[2:], 2, anchor_params=anchors, feature_size=8, mask_feature_size=8,
                    legacy=legacy, **kw)

rng = np.random.default_rng(0)
image = rng.uniform(-1, 1, (1, 64, 96, 3)).astype("float32")
result = {}
pred = tiny(score_threshold=0.0, max_detections=10)
save_model(pred, os.path.join(out, "tiny_prediction.keras"), anchor_params=anchors.get_config())
result["prediction"] = pred.predict_on_batch(image)
leg = tiny(legacy=True, score_threshold=0.0, max_detections=10)
save_model(leg, os.path.join(out, "tiny_legacy.keras"))
result["legacy"] = leg.predict_on_batch(image)
train = training_model(tiny(score_threshold=0.0, max_detections=10))
save_model(train, os.path.join(out, "tiny_snapshot.keras"), epoch=1, anchor_params=anchors.get_config(),
           filter=dict(class_specific_filter=False, max_detections=7, score_threshold=0.0))
from keras_maskrcnn.models import load_model
result["snapshot"] = load_model(os.path.join(out, "tiny_snapshot.keras")).predict_on_batch(image)
arrays = {"image": image}
for key, outputs in result.items():
    for name, value in zip(("regression", "classification", "boxes", "scores", "labels", "masks"), outputs):
        arrays[f"{key}_{name}"] = value
arrays = {key: value for key, value in arrays.items() if not key.endswith(("regression", "classification"))}
np.savez_compressed(os.path.join(out, "tiny_predictions.npz"), **arrays)
import zipfile
for key in ("prediction", "legacy", "snapshot"):
    path = os.path.join(out, f"tiny_{key}.keras")
    with zipfile.ZipFile(path) as source:
        members = [(info.filename, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for name, data in members:
            target.writestr(name, data)
    os.replace(path + ".tmp", path)
