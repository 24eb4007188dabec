"""Data set readers (one Generator per format) and the batches they make.

    from keras_maskrcnn.preprocessing import CocoGenerator, CSVGenerator, LabelmeGenerator, YoloGenerator

The generators are imported when first used, so importing this package loads no Keras.
"""

_GENERATORS = {
    "CSVGenerator": "csv_generator",
    "CocoGenerator": "coco",
    "LabelmeGenerator": "labelme",
    "YoloGenerator": "yolo",
}

__all__ = sorted(_GENERATORS)


def __getattr__(name):
    """The generator class `name` (CSVGenerator, CocoGenerator, LabelmeGenerator, YoloGenerator),
    imported from its module on first use."""
    if name in _GENERATORS:
        import importlib

        return getattr(importlib.import_module(f".{_GENERATORS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_GENERATORS))
