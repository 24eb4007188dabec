"""Instance segmentation in Keras 3: RetinaNet detections with a RoIAlign mask head."""

__version__ = "0.3.0.dev0"


def __getattr__(name):
    """`keras_maskrcnn.Predictor` and `keras_maskrcnn.Result`, imported when first used (importing the
    package stays cheap: the command-line tools' --help loads no Keras)."""
    if name in ("Predictor", "Result"):
        from .inference import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'keras_maskrcnn' has no attribute {name!r}")
