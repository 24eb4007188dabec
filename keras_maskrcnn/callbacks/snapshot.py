"""Saving training snapshots that `keras_maskrcnn.models.load_model` opens as the prediction model,
and finding the newest complete one to resume from."""

import contextlib
import os
import warnings
import zipfile

import keras

from ..models.saving import is_complete_snapshot, read_metadata, remove_stale_temporaries, save_model


def latest_snapshot(directory, backbone=None, dataset=None):
    """The newest complete snapshot in `directory`: of the `.keras` files whose metadata records
    an epoch (and this backbone and data set type, when given), the one of the highest epoch
    (the newest file among equals) that `is_complete_snapshot`; None when there is none. Files
    that fail the check are skipped with a warning; temporary files of `save_model` never count.
    """
    candidates = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        path = os.path.join(directory, name)
        if not name.endswith(".keras") or not os.path.isfile(path):
            continue
        try:
            metadata = read_metadata(path)
        except ValueError:  # not a model file, truncated, or over the size limits (check_model_file)
            warnings.warn(f"snapshot {path!r} is incomplete or damaged; ignored", stacklevel=2)
            continue
        if not isinstance(metadata.get("epoch"), int):  # another model, or a damaged file
            if not zipfile.is_zipfile(path):
                warnings.warn(f"snapshot {path!r} is incomplete or damaged; ignored", stacklevel=2)
            continue
        if (backbone and metadata.get("backbone") != backbone) or (dataset and metadata.get("dataset") != dataset):
            continue
        candidates.append((metadata["epoch"], os.path.getmtime(path), path))
    for _, _, path in sorted(candidates, reverse=True):
        if is_complete_snapshot(path):
            return path
        warnings.warn(f"snapshot {path!r} is incomplete or damaged; ignored", stacklevel=2)
    return None


class Snapshot(keras.callbacks.Callback):
    """Saves the model being fitted (with its optimizer) at the end of every epoch.

    filepath: template with `{epoch}` (1-based; format specs such as `{epoch:02d}` allowed),
    e.g. 'snapshots/resnet50_csv_{epoch:02d}.keras'. metadata: JSON-serialisable dict stored
    in the file with the epoch (see `save_model`), e.g. backbone, anchor_params, filter, classes.
    model: the model to save instead of the fitted one. verbose: 1 prints each path.
    discard: delete each file once written, for the workers other than the chief of a
    multi-worker run, which must save too: saving reads variables spread over the workers, with
    collective operations that every worker takes part in.
    """

    def __init__(self, filepath, metadata=None, model=None, verbose=1, discard=False):
        super().__init__()
        if not str(filepath).endswith(".keras"):
            raise ValueError(f"snapshot files end in .keras, got {filepath!r}")
        self.filepath = str(filepath)
        self.metadata = dict(metadata or {})
        self.saved_model = model
        self.verbose = verbose
        self.discard = discard
        self.last_path = None

    def on_train_begin(self, logs=None):
        directory = os.path.dirname(os.path.abspath(self.filepath))
        for path in remove_stale_temporaries(directory):
            if self.verbose:
                print(f"Removed {path}, left by a run that was stopped while saving")

    def on_epoch_end(self, epoch, logs=None):
        path = self.filepath.format(epoch=epoch + 1)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        model = self.saved_model if self.saved_model is not None else self.model
        save_model(model, path, **dict(self.metadata, epoch=epoch + 1))
        if self.discard:
            os.remove(path)
            with contextlib.suppress(OSError):  # the folder, when nothing else is in it
                os.rmdir(directory)
            return
        self.last_path = path
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: saved snapshot {path}")
