"""Saving training snapshots that `keras_maskrcnn.models.load_model` opens as the prediction model."""

import os

import keras

from ..models.saving import save_model


class Snapshot(keras.callbacks.Callback):
    """Saves the model being fitted (with its optimizer) at the end of every epoch.

    filepath: template with `{epoch}` (1-based; format specs such as `{epoch:02d}` allowed),
    e.g. 'snapshots/resnet50_csv_{epoch:02d}.keras'. metadata: JSON-serialisable dict stored
    in the file with the epoch (see `save_model`), e.g. backbone, anchor_params, filter, classes.
    model: the model to save instead of the fitted one. verbose: 1 prints each path.
    """

    def __init__(self, filepath, metadata=None, model=None, verbose=1):
        super().__init__()
        if not str(filepath).endswith(".keras"):
            raise ValueError(f"snapshot files end in .keras, got {filepath!r}")
        self.filepath = str(filepath)
        self.metadata = dict(metadata or {})
        self.saved_model = model
        self.verbose = verbose
        self.last_path = None

    def on_epoch_end(self, epoch, logs=None):
        path = self.filepath.format(epoch=epoch + 1)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        model = self.saved_model if self.saved_model is not None else self.model
        save_model(model, path, **dict(self.metadata, epoch=epoch + 1))
        self.last_path = path
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: saved snapshot {path}")
