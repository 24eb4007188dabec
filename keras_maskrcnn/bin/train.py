"""`maskrcnn-train`: trains a Mask R-CNN on a COCO, CSV, labelme or YOLO data set.

    maskrcnn-train [options] coco PATH [--images DIR] [--val-annotations FILE.json [--val-images DIR]]
    maskrcnn-train [options] csv ANNOTATIONS CLASSES [--val-annotations FILE]
    maskrcnn-train [options] labelme FOLDER [--classes labels.txt] [--val-folder DIR]
    maskrcnn-train [options] yolo DATA.yaml [--split train] [--val-split val]

The validation set (evaluated after every epoch unless --no-evaluation) is coco's
--val-annotations, or with a folder PATH its instances_val2017.json when it exists; csv's
--val-annotations; labelme's --val-folder; yolo's --val-split of the YAML file when it has one.

Snapshots `{backbone}_{dataset}_{epoch:02d}.keras` hold the training model with its optimizer
and the settings needed to rebuild the prediction model; `load_model` opens them as the
prediction model and `--snapshot` resumes training from them.

`main` reads as its steps, each a function returning what it made: `parse_args` (the checked
options), `resolve_run` (what the files named decide: the snapshot's metadata, an old weights file,
the anchors), `start_devices`, `read_data` (the generators and classes), `build_or_load` (the training
and prediction models and the first epoch) and `fit`.

Keras and the model code are imported by the functions that use them, so that `--help` comes
without loading TensorFlow.
"""

import argparse
import dataclasses
import importlib.util
import os
import sys
import tempfile

from .. import defaults
from ..preprocessing.bad_images import TooManyBadImagesError, default_max_bad_images, listing, too_many_message
from ..utils.anchors import AnchorParameters
from ..utils.image import random_visual_effect_generator
from ..utils.transform import random_transform_generator
from . import common, quiet

DEFAULT_LR = 1e-5
DEFAULT_CLIPNORM = 0.001
WEIGHT_EXTENSIONS = (".keras", ".h5", ".hdf5")


def parse_args(args):
    """(parser, checked arguments) of the command line `args` (None: sys.argv); exits through
    parser.error on bad arguments. See `check_args` for what is filled in."""
    parser = build_parser()
    parsed = parser.parse_args(common.argv(args))
    quiet.quiet_startup(parsed.verbose, gpu=parsed.gpu)  # before check_args imports Keras
    return parser, check_args(parser, parsed)


def build_parser():
    """The argument parser of maskrcnn-train (its options before and after the data set type)."""
    parser = argparse.ArgumentParser(
        prog="maskrcnn-train",
        description="Train a Mask R-CNN (RetinaNet + RoIAlign mask head) on a COCO, CSV, labelme or YOLO data set.")
    subparsers = common.dataset_subparsers(parser, val_annotations=True)
    flags = common.FlagAdder(parser, subparsers)
    flags.exclusive(
        (("--snapshot",), dict(help="resume training from a snapshot written by maskrcnn-train; 'latest': from "
                                    "the newest complete one in --snapshot-path (by epoch), or from the start "
                                    "when there is none; nothing to do when it has reached --epochs")),
        (("--weights",), dict(help="initialise from a .keras model, an .h5 weights file, or an .h5 model of "
                                   "keras-maskrcnn 0.2 / keras-retinanet 1.0 / keras-resnet (their architecture "
                                   "is rebuilt), by layer name (layers whose shapes differ are skipped)")),
        (("--imagenet-weights",), dict(action="store_true",
                                       help="initialise the backbone with ImageNet weights (downloads them)")),
        (("--no-weights",), dict(action="store_true",
                                 help="initialise every layer randomly (the default; nothing is downloaded)")),
    )
    common.add_backbone(flags, default=None)
    flags.add("--batch-size", type=common.positive_int, default=1, help="images per batch (default 1)")
    flags.add("--gpu", help="id of the GPU to use (as nvidia-smi reports it); -1 for none")
    flags.add("--multi-gpu", type=common.non_negative_int, default=0, metavar="N",
              help="train data-parallel on N devices: the first N GPUs, or N virtual CPU devices when there "
                   "is no GPU; --batch-size is split over them and must be a multiple of N "
                   "(default 0: one device)")
    flags.add("--multi-worker", action="store_true",
              help="train data-parallel over several worker processes (machines) that all run this same command: "
                   "TensorFlow reads the cluster from TF_CONFIG, JAX from KERAS_DISTRIBUTION_JOB_ADDRESSES, "
                   "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID (see the README); "
                   "--batch-size is the global batch, each worker reads its share; only worker 0 writes "
                   "snapshots and logs")
    flags.add("--worker-timeout", type=common.positive_float, default=60.0, metavar="SECONDS",
              help="with --multi-worker: when a worker stops (an error, --max-bad-images, a kill), every other "
                   "worker exits (status 3) naming it, at once, or after SECONDS without a word from it when its "
                   "machine or network goes silent (default 60)")
    flags.add("--epochs", type=common.positive_int, default=50,
              help="train until this epoch (default 50; a resumed snapshot's epochs count)")
    flags.add("--steps", type=common.positive_int, default=None,
              help="batches per epoch (default: one pass over the training data)")
    flags.add("--lr", type=common.positive_float, default=None,
              help=f"Adam learning rate (default {DEFAULT_LR}; a resumed snapshot keeps its own unless given)")
    flags.add("--clipnorm", type=common.positive_float, default=DEFAULT_CLIPNORM,
              help=f"clip each gradient to this norm (default {DEFAULT_CLIPNORM}, keras-retinanet's; "
                   "ignored with --snapshot)")
    flags.add("--snapshot-path", default="./snapshots",
              help="folder for snapshots and the CSV training log (default ./snapshots)")
    flags.add("--tensorboard-dir", default="./logs",
              help="TensorBoard log folder (default ./logs; '' disables TensorBoard)")
    flags.add("--tensorboard-images", type=common.non_negative_int, default=0, metavar="N",
              help="add N validation pictures (ground truth beside predictions) to TensorBoard every epoch "
                   "(default 0)")
    flags.add("--no-snapshots", dest="snapshots", action="store_false", help="do not save snapshots")
    flags.add("--no-evaluation", dest="evaluation", action="store_false",
              help="do not evaluate on the validation set after every epoch (and read no validation set)")
    flags.add("--freeze-backbone", action="store_true", help="freeze the backbone layers")
    flags.add("--no-class-specific-filter", dest="class_specific_filter", action="store_false",
              help="non-maximum suppression across classes instead of per class")
    flags.add("--config", help="a .ini file with an [anchor_parameters] section")
    flags.add("--weighted-average", action="store_true",
              help="weight the per-class AP by instance counts in the evaluation mAP")
    common.add_image_size(flags, None, None)
    common.add_pad_multiple(flags)
    flags.add("--random-transform", action="store_true",
              help="augment with random rotation, translation, shear, scaling, flips and colour changes "
                   "(default: horizontal flips only)")
    flags.add("--compute-val-loss", action="store_true", help="also compute the loss on the validation set")
    flags.add("--max-detections", type=common.positive_int, default=defaults.MAX_DETECTIONS,
              help=f"detections per image kept by the prediction model (default {defaults.MAX_DETECTIONS})")
    flags.add("--feature-size", type=common.positive_int, default=256,
              help="channels of the FPN and the box heads (default 256; ignored with --snapshot)")
    flags.add("--mask-feature-size", type=common.positive_int, default=256,
              help="channels of the mask head's convolutions (default 256; ignored with --snapshot)")
    flags.add("--mask-upsampling", choices=("nearest", "transposed"), default=None,
              help="how the mask head goes from 14x14 to 28x28: a 2x2 stride-2 transposed conv (the paper's, the "
                   "default for new models) or nearest upsampling + conv3x3 (keras-maskrcnn's, the default with "
                   "--weights of an old .h5 file, which was trained with it); ignored with --snapshot")
    flags.add("--mask-rois", type=common.positive_int, default=64,
              help="most RoIs per image the mask head trains on: ground-truth boxes, then one jittered copy "
                   "of each (default 64; a batch is padded only to the next multiple of --mask-rois-multiple)")
    flags.add("--mask-rois-multiple", type=common.positive_int, default=16,
              help="pad a batch's mask RoI rows up to a multiple of this, at most --mask-rois (default 16); "
                   "equal to --mask-rois, every batch has the same rows, one input shape less to compile for "
                   "on JAX")
    flags.add("--workers", type=common.positive_int, default=1,
              help="threads (or processes with --multiprocessing) preparing batches (default 1)")
    flags.add("--multiprocessing", action="store_true",
              help="prepare batches in processes (started once, kept for the whole run) instead of threads")
    flags.add("--max-queue-size", type=common.positive_int, default=10,
              help="batches prepared ahead of training (default 10)")
    flags.add("--seed", type=int, default=None, help="random seed for weights, shuffling and augmentation")
    flags.add("--max-bad-images", type=common.non_negative_int, default=None, metavar="N",
              help="stop when more than N images (or their masks) of the training set cannot be read; fewer are "
                   "left out, or replaced in their batch by another image, with a warning "
                   "(default: 1%% of the images, at least 1)")
    flags.add("--run-eagerly", action="store_true",
              help="run the training step op by op instead of compiling it: slower per step, no compile time "
                   "(for debugging, or runs of a few steps)")
    flags.add("--mixed-precision", action="store_true",
              help="compute in mixed_float16 on a GPU (with loss scaling), mixed_bfloat16 otherwise; "
                   "weights and losses stay float32")
    quiet.add_verbose_option(flags)
    return parser


def check_args(parser, args):
    """`args`, checked as far as they can be without data or model (parser.error otherwise).

    The options that the files named decide are filled in: `--snapshot latest` becomes the snapshot
    it stands for (or None); --backbone left unset comes from the snapshot or an old --weights file,
    the image sizes and --pad-multiple from the snapshot, else the defaults. Nothing else is added to
    `args`; `resolve_run` reads the files' settings.
    """
    from ..utils.distribution import check_backend, check_batch_size

    common.check_dataset(parser, args)
    given = [flag for flag, value in (("--snapshot", args.snapshot), ("--weights", args.weights),
                                      ("--imagenet-weights", args.imagenet_weights), ("--no-weights", args.no_weights))
             if value]
    if len(given) > 1:
        parser.error(f"argument {given[1]}: not allowed with argument {given[0]}")
    if args.weights is not None:
        check_weights(parser, args)
    latest = args.snapshot == "latest"
    if latest:
        args.snapshot = resolve_latest(args)
    metadata = {}
    if args.snapshot is not None:
        metadata = read_snapshot(parser, args.snapshot)
        saved_backbone = metadata.get("backbone")
        if args.backbone is None:
            args.backbone = saved_backbone
        elif saved_backbone and saved_backbone != args.backbone:
            parser.error(f"snapshot {args.snapshot!r} was trained with --backbone {saved_backbone}, "
                         f"not {args.backbone}")
        if metadata["epoch"] >= args.epochs and not latest:  # latest: done, see resolve_run
            parser.error(f"snapshot {args.snapshot!r} is at epoch {metadata['epoch']}; "
                         f"--epochs {args.epochs} must be larger to train further")
    common.apply_model_defaults(args, metadata)
    if args.multi_worker:
        check_multi_worker_args(parser, args)
    try:
        check_backend(args.multi_gpu)
        check_batch_size(args.batch_size, args.multi_gpu)
    except ValueError as error:
        parser.error(f"--multi-gpu {args.multi_gpu}: {error}")
    if args.image_min_side < 32 or args.image_max_side < 32:
        parser.error("--image-min-side and --image-max-side must be at least 32")
    check_validation_args(parser, args)
    if args.config is not None:
        common.check_file(parser, args.config, "config file")
    return args


def check_weights(parser, args):
    """parser.error unless --weights names a .keras or .h5 file whose backbone agrees with --backbone;
    an old .h5 model's backbone becomes --backbone when none is given."""
    common.check_file(parser, args.weights, "weights file")
    if not args.weights.endswith(WEIGHT_EXTENSIONS):
        parser.error(f"weights file {args.weights!r} must be a .keras model or an .h5 weights file")
    old_weights = old_weights_file(parser, args.weights)
    if old_weights is not None:
        if args.backbone is None:
            args.backbone = old_weights.backbone
        elif args.backbone != old_weights.backbone:
            parser.error(f"weights file {args.weights!r} holds a {old_weights.backbone} backbone, "
                         f"not --backbone {args.backbone}")


def read_snapshot(parser, path):
    """The metadata of the snapshot `path`; parser.error when it does not exist or records no epoch."""
    from ..models import read_metadata

    common.check_file(parser, path, "snapshot")
    metadata = read_metadata(path)
    if "epoch" not in metadata:
        parser.error(f"{path!r} is not a snapshot written by maskrcnn-train (it records no epoch)")
    return metadata


@dataclasses.dataclass(frozen=True)
class Run:
    """What a maskrcnn-train run takes from the files its arguments name (see `resolve_run`).

    Args:
        snapshot_metadata: the metadata of --snapshot ({} without one).
        old_weights: the `LegacyFile` of --weights when it is a keras-maskrcnn 0.2 / keras-retinanet 1.0 /
            keras-resnet .h5 model, else None.
        anchor_params: `AnchorParameters` of --config, the snapshot or the old weights file (None: the defaults).
        tensorboard_dir: TensorBoard's log folder ('' for none).
        finished: `--snapshot latest` has reached --epochs: there is nothing to train (and nothing
            else is resolved).
    """

    snapshot_metadata: dict = dataclasses.field(default_factory=dict)
    old_weights: object = None
    anchor_params: AnchorParameters = None
    tensorboard_dir: str = ""
    finished: bool = False


def resolve_run(parser, args):
    """The `Run` of checked `args`: the snapshot's metadata, the old weights file, the anchors and the
    TensorBoard folder; parser.error when the anchors of two sources differ."""
    metadata = read_snapshot(parser, args.snapshot) if args.snapshot is not None else {}
    if metadata and metadata["epoch"] >= args.epochs:  # check_args lets only --snapshot latest through
        print(f"--snapshot latest: {args.snapshot} is at epoch {metadata['epoch']}, --epochs {args.epochs} "
              f"are done")
        return Run(snapshot_metadata=metadata, finished=True)
    old_weights = old_weights_file(parser, args.weights) if args.weights is not None else None
    return Run(snapshot_metadata=metadata, old_weights=old_weights,
               anchor_params=resolve_anchors(parser, args, metadata, old_weights),
               tensorboard_dir=tensorboard_dir(args))


def resolve_anchors(parser, args, metadata, old_weights):
    """The anchors of the run, or None for the defaults: a snapshot's own (parser.error when --config
    gives others), else --config's, else an old keras-maskrcnn / keras-retinanet file's."""
    anchor_params = common.anchor_parameters(parser, args.config)
    if anchor_params is None and old_weights is not None and old_weights.kind != "keras-resnet":
        anchor_params = old_weights.anchor_params
    if metadata.get("anchor_params"):
        saved = AnchorParameters.from_config(metadata["anchor_params"])
        if anchor_params is not None and anchor_params != saved:
            parser.error(f"the anchors of --config {args.config!r} differ from those of snapshot {args.snapshot!r}")
        anchor_params = saved
    return anchor_params


def tensorboard_dir(args):
    """--tensorboard-dir, or '' (with a note) when the tensorboard package is not installed."""
    if args.tensorboard_dir and importlib.util.find_spec("tensorboard") is None:
        print("maskrcnn-train: the tensorboard package is not installed, so TensorBoard logging is off "
              "(pip install tensorboard, or pass --tensorboard-dir '' to silence this)", file=sys.stderr)
        return ""
    return args.tensorboard_dir


VALIDATION_FLAGS = {"coco": "--val-annotations", "csv": "--val-annotations", "labelme": "--val-folder",
                    "yolo": "--val-split"}


def check_validation_args(parser, args):
    """parser.error for validation set options that name no file, or that go with nothing."""
    if args.dataset_type in ("coco", "csv") and args.val_annotations:
        common.check_file(parser, args.val_annotations, "validation annotations file")
    if args.dataset_type == "coco" and args.val_images is not None:
        if args.val_annotations is None:
            parser.error("--val-images goes with --val-annotations FILE.json")
        if not os.path.isdir(args.val_images):
            parser.error(f"--val-images folder {args.val_images!r} does not exist")
    if args.dataset_type == "labelme" and args.val_folder is not None and not os.path.isdir(args.val_folder):
        parser.error(f"--val-folder {args.val_folder!r} does not exist")
    if args.compute_val_loss and validation_source(args) is None:
        parser.error(f"--compute-val-loss needs {VALIDATION_FLAGS[args.dataset_type]} (a validation set)")


def validation_source(args):
    """The create_generator arguments of the validation set (a dict), or None without one.

    coco: --val-annotations (and --val-images), else with a folder PATH its
    annotations/instances_val2017.json when it exists; csv: --val-annotations; labelme:
    --val-folder; yolo: --val-split when the YAML file has such an entry.
    """
    if args.dataset_type == "coco":
        if args.val_annotations:
            return dict(annotations=args.val_annotations, images=args.val_images)
        if os.path.isdir(args.coco_path) and os.path.isfile(
                os.path.join(args.coco_path, "annotations", "instances_val2017.json")):
            return dict(set_name="val2017")
        return None
    if args.dataset_type == "csv":
        return dict(annotations=args.val_annotations) if args.val_annotations else None
    if args.dataset_type == "labelme":
        return dict(folder=args.val_folder) if args.val_folder else None
    return dict(split=args.val_split) if yaml_has_split(args.data_yaml, args.val_split) else None


def yaml_has_split(path, split):
    """False when the YAML file at `path` is a mapping without an entry `split`, else True (a file
    that cannot be read is left to the generator's error)."""
    import yaml

    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return True
    return not isinstance(data, dict) or data.get(split) is not None


def no_validation_note(args):
    """The line printed when evaluation is on but the data set has no validation set."""
    if args.dataset_type == "yolo":
        missing = f"{args.data_yaml} has no {args.val_split!r} split (--val-split)"
    elif args.dataset_type == "coco" and os.path.isdir(args.coco_path):
        missing = (f"{os.path.join(args.coco_path, 'annotations', 'instances_val2017.json')} does not exist and no "
                   f"--val-annotations given")
    else:
        missing = f"no {VALIDATION_FLAGS[args.dataset_type]} given"
    return (f"maskrcnn-train: {missing}, so there is no validation set and no evaluation after each epoch "
            f"(--no-evaluation silences this)")


def check_multi_worker_args(parser, args):
    """parser.error for what --multi-worker does not combine with; a shared --seed by default."""
    if args.multi_gpu:
        parser.error("--multi-worker: not allowed with --multi-gpu (each worker uses all its GPUs)")
    if args.compute_val_loss:
        parser.error("--multi-worker: --compute-val-loss is not supported; evaluate the snapshots with "
                     "maskrcnn-evaluate")
    if args.evaluation and validation_source(args) is not None:
        print("--multi-worker: no evaluation during training (the prediction model is spread over the workers); "
              "evaluate the snapshots with maskrcnn-evaluate")
        args.evaluation = False
    if args.seed is None:
        print("--multi-worker: no --seed given, using --seed 0, so that every worker shuffles and augments "
              "the data set alike and reads its own share of the same batches")
        args.seed = 0


def old_weights_file(parser, path):
    """The `LegacyFile` of an .h5 model written by keras-maskrcnn 0.2, keras-retinanet 1.0 or
    keras-resnet 0.2 (arrays not read yet); None for .keras files and Keras 3's own .h5 files;
    parser.error for other .h5 files."""
    from ..models.legacy_h5 import LegacyFile

    if not path.endswith((".h5", ".hdf5")) or path.endswith(".weights.h5"):
        return None
    try:
        import h5py

        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", b"")
        if (version.decode() if isinstance(version, bytes) else str(version)).startswith("3."):
            return None
        return LegacyFile(path, arrays=False)
    except (OSError, ValueError) as error:
        parser.error(f"--weights: {error}")


def resolve_latest(args):
    """The snapshot `--snapshot latest` stands for: the newest complete one in --snapshot-path of
    this data set type (and --backbone, when given), or None (training starts afresh)."""
    from ..callbacks.snapshot import latest_snapshot

    path = latest_snapshot(args.snapshot_path, backbone=args.backbone, dataset=args.dataset_type)
    if path is None:
        print(f"--snapshot latest: no complete snapshot in {args.snapshot_path!r} yet; training from the start")
    else:
        print(f"--snapshot latest: resuming from {path}")
    return path


def create_generators(parser, args, backbone, anchor_params):
    """(training generator, validation generator or None); parser.error on unreadable data."""
    if args.random_transform:
        transform_generator = random_transform_generator(
            min_rotation=-0.1, max_rotation=0.1, min_translation=(-0.1, -0.1), max_translation=(0.1, 0.1),
            min_shear=-0.1, max_shear=0.1, min_scaling=(0.9, 0.9), max_scaling=(1.1, 1.1),
            flip_x_chance=0.5, flip_y_chance=0.5)
        visual_effect_generator = random_visual_effect_generator()
    else:
        transform_generator = random_transform_generator(flip_x_chance=0.5)
        visual_effect_generator = None
    shared = dict(batch_size=args.batch_size, anchor_params=anchor_params, workers=args.workers,
                  use_multiprocessing=args.multiprocessing, max_queue_size=args.max_queue_size,
                  mask_rois_per_image=args.mask_rois, mask_rois_multiple=args.mask_rois_multiple, seed=args.seed,
                  skip_bad_images=True)
    train = common.create_generator(parser, args, backbone, set_name="train2017",
                                    transform_generator=transform_generator,
                                    visual_effect_generator=visual_effect_generator, **shared)
    validation = None
    source = validation_source(args) if args.evaluation or args.compute_val_loss else None
    if source is not None:
        validation = common.create_generator(parser, args, backbone, shuffle_groups=False, **source, **shared)
    elif args.evaluation:
        print(no_validation_note(args))
    if validation is not None:
        check_same_classes(parser, args, train, validation)
    if validation is not None:
        check_unreadable(parser, validation, "validation set", args.max_bad_images)
    args.max_bad_images = check_unreadable(parser, train, "training set", args.max_bad_images)
    return train, validation


def check_same_classes(parser, args, train, validation):
    """parser.error unless the validation set has the training set's classes in the same order."""
    names, other = common.class_names(train), common.class_names(validation)
    if names == other:
        return
    if len(names) != len(other):
        difference = f"has {len(other)} class{'es' if len(other) != 1 else ''}, the training set {len(names)}"
    else:
        label = next(i for i, (a, b) in enumerate(zip(names, other)) if a != b)
        difference = f"calls label {label} {other[label]!r}, the training set {names[label]!r}"
    hint = (" (give both the same --classes labels.txt)" if args.dataset_type == "labelme" and args.classes is None
            else "")
    parser.error(f"the validation set {difference}{hint}")


def check_unreadable(parser, generator, what, max_bad_images=None):
    """The most bad images allowed in `generator`'s data set (max_bad_images, else 1 % of it);
    parser.error listing the unreadable images the generator left out when there are more,
    else a warning listing them."""
    unreadable = generator.bad_images.messages().values()
    total = generator.size() + len(unreadable)
    limit = max_bad_images if max_bad_images is not None else default_max_bad_images(total)
    if len(unreadable) > limit:
        parser.error(f"{what}: {too_many_message(len(unreadable), limit, total, unreadable)}")
    if unreadable:
        print(f"maskrcnn-train: warning: {what}: {len(unreadable)} of {total} images cannot be read and "
              f"{'are' if len(unreadable) > 1 else 'is'} left out (at most {limit} may be bad):\n"
              f"{listing(unreadable)}", file=sys.stderr)
    return limit


def _copy_matching(model, source):
    """Copies the weights of same-named layers of equal shapes, nested models layer by layer.

    Returns (layers copied, layers skipped because their shapes differ).
    """
    import keras

    source_layers = {layer.name: layer for layer in source.layers}
    copied = skipped = 0
    for layer in model.layers:
        other = source_layers.get(layer.name)
        if other is None or not layer.weights:
            continue
        if isinstance(layer, keras.Model) and isinstance(other, keras.Model):
            inner_copied, inner_skipped = _copy_matching(layer, other)
            copied, skipped = copied + inner_copied, skipped + inner_skipped
        elif [tuple(w.shape) for w in layer.weights] == [tuple(w.shape) for w in other.weights]:
            layer.set_weights(other.get_weights())
            copied += 1
        else:
            skipped += 1
    return copied, skipped


def load_weights(parser, model, path):
    """Loads weights by layer name from a .keras model or a legacy .h5 file, skipping layers
    whose shapes differ (e.g. the outputs of a model with other classes)."""
    import keras

    from ..models.backbone import Backbone

    try:
        if path.endswith(".keras"):
            source = keras.saving.load_model(path, custom_objects=Backbone("resnet50").custom_objects,
                                             compile=False)
            copied, skipped = _copy_matching(model, source)
            print(f"Loaded the weights of {copied} layers from {path} ({skipped} skipped: shapes differ)")
        elif path.endswith(".weights.h5"):
            model.load_weights(path, skip_mismatch=True)
        else:
            model.load_weights(path, skip_mismatch=True, by_name=True)
    except Exception as error:  # h5py and keras raise many types for unreadable files
        parser.error(f"could not read weights from {path!r}: {error}")


def quicken_batch_normalization(model, momentum=0.9):
    """Lowers the momentum of trainable BatchNormalization layers (keras.applications use 0.99
    or 0.999) so that, from scratch, their moving statistics follow the changing activations
    within tens of steps; otherwise the prediction model (inference mode) sees stale statistics
    and outputs the same detections for every image long into training."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            layer.momentum = min(layer.momentum, momentum)


def load_old_weights(model, path):
    """Initialises `model` from an old .h5 file by layer name and prints what was loaded and skipped."""
    from ..models.legacy import load_weights_by_name
    from ..models.legacy_h5 import LegacyFile

    legacy = LegacyFile(path)
    loaded, skipped, missing = load_weights_by_name(model, legacy, skip_mismatch=True)
    print(f"Loaded the weights of {len(loaded)} layers from {legacy.describe()}")
    for name, reason in skipped:
        print(f"  skipped {name}: {reason}; it starts fresh")
    if missing:
        print(f"  not in the file, starting fresh: {len(missing)} layers ({', '.join(missing[:6])}"
              f"{', ...' if len(missing) > 6 else ''})")


def create_models(parser, args, backbone, num_classes, anchor_params, old_weights=None):
    """(compiled training model, prediction model) sharing their weights. With an old .h5 file as
    --weights (old_weights: its `LegacyFile`), the architecture is that of keras-maskrcnn 0.2
    (keras-resnet backbone, its RoIAlign)."""
    weights = "imagenet" if args.imagenet_weights else None
    if old_weights is not None:
        from ..models.legacy import legacy_maskrcnn
        from ..utils.precision import policy_scope, resolve_policy

        with policy_scope(resolve_policy(args.mixed_precision or None)):
            model = legacy_maskrcnn(num_classes, args.backbone, freeze_backbone=args.freeze_backbone,
                                    anchor_params=anchor_params, **filter_options(args), feature_size=args.feature_size,
                                    mask_feature_size=args.mask_feature_size, mask_upsampling=args.mask_upsampling,
                                    mixed_precision=args.mixed_precision or None)
        load_old_weights(model, args.weights)
        return _compiled(args, model, anchor_params)
    try:
        model = backbone.maskrcnn(num_classes, weights=weights, freeze_backbone=args.freeze_backbone,
                                  freeze_bn=True if args.weights else None, anchor_params=anchor_params,
                                  **filter_options(args), feature_size=args.feature_size,
                                  mask_feature_size=args.mask_feature_size, mask_upsampling=args.mask_upsampling,
                                  mixed_precision=args.mixed_precision or None)
    except Exception as error:  # a failed download surfaces as one of many types
        if weights == "imagenet":
            parser.error(f"could not get ImageNet weights for {args.backbone} (no internet?): {error}")
        raise
    if args.weights:
        load_weights(parser, model, args.weights)
    elif weights is None:
        quicken_batch_normalization(model)
    return _compiled(args, model, anchor_params)


def _compiled(args, model, anchor_params):
    """(compiled training model, prediction model) of a freshly built prediction model."""
    import keras

    from .. import losses
    from ..models import prediction_model, training_model

    train = training_model(model)
    train.compile(loss=losses.training_losses(),
                  optimizer=keras.optimizers.Adam(learning_rate=args.lr or DEFAULT_LR, clipnorm=args.clipnorm))
    return train, prediction_model(train, anchor_params=anchor_params, **filter_options(args))


def resume_models(parser, args):
    """(training model with its optimizer state, prediction model, epoch) of --snapshot."""
    from ..models import load_training_model, prediction_model
    from ..models.saving import resolve_settings

    try:
        train, metadata = load_training_model(args.snapshot, args.backbone,
                                              mixed_precision=args.mixed_precision or None)
    except ValueError as error:
        parser.error(str(error))
    if args.lr is not None:
        train.optimizer.learning_rate.assign(args.lr)
    settings = resolve_settings(train, metadata, max_detections=args.max_detections)
    return train, prediction_model(train, settings=settings), int(metadata["epoch"])


def filter_options(args):
    """The `DetectionFilter` fields maskrcnn-train's options set (the others keep their defaults): what a new
    prediction model is built with and what snapshots record under "filter"."""
    return dict(class_specific_filter=args.class_specific_filter, max_detections=args.max_detections)


def snapshot_metadata(args, anchor_params, classes):
    """What a snapshot records besides the epoch: enough to rebuild the prediction model."""
    return dict(backbone=args.backbone, dataset=args.dataset_type, classes=classes,
                anchor_params=anchor_params.get_config() if anchor_params is not None else None,
                filter=filter_options(args),
                image_min_side=args.image_min_side, image_max_side=args.image_max_side,
                pad_multiple=args.pad_multiple)


def create_callbacks(args, train, prediction, validation, metadata, train_generator=None, chief=True,
                     tensorboard_dir=None):
    """The bad image monitor (with train_generator), evaluation, snapshots, TensorBoard,
    ReduceLROnPlateau, TerminateOnNaN and CSVLogger.

    metadata: what the snapshots record (`snapshot_metadata`); tensorboard_dir: TensorBoard's log
    folder, '' for none (None: --tensorboard-dir).

    The monitor and evaluation come first so that 'skipped_images' and 'mAP' reach the
    TensorBoard and CSV logs of the epoch. chief=False (the other workers of --multi-worker):
    no evaluation, snapshots, TensorBoard or CSV log.
    """
    import keras

    from ..callbacks.bad_images import BadImageMonitor
    from ..callbacks.snapshot import Snapshot

    callbacks = []
    if train_generator is not None:
        callbacks.append(BadImageMonitor(train_generator, args.max_bad_images))
    if not chief:
        if args.snapshots:
            scratch = os.path.join(tempfile.mkdtemp(prefix="maskrcnn-train-worker-"), "{epoch:02d}.keras")
            callbacks.append(Snapshot(scratch, metadata=metadata, model=train, verbose=0, discard=True))
        return callbacks + [keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=2, verbose=0,
                                                              min_delta=1e-4, cooldown=0, min_lr=0),
                            keras.callbacks.TerminateOnNaN()]
    tensorboard_dir = args.tensorboard_dir if tensorboard_dir is None else tensorboard_dir
    tensorboard = keras.callbacks.TensorBoard(log_dir=tensorboard_dir) if tensorboard_dir else None
    if args.evaluation and validation is not None:
        if args.dataset_type == "coco":
            from ..callbacks.coco import CocoEval

            callbacks.append(CocoEval(validation, prediction_model=prediction, tensorboard=tensorboard,
                                      max_detections=args.max_detections, tensorboard_images=args.tensorboard_images))
        else:
            from ..callbacks.eval import Evaluate

            callbacks.append(Evaluate(validation, prediction_model=prediction, tensorboard=tensorboard,
                                      weighted_average=args.weighted_average, max_detections=args.max_detections,
                                      tensorboard_images=args.tensorboard_images))
    if args.snapshots:
        os.makedirs(args.snapshot_path, exist_ok=True)
        template = os.path.join(args.snapshot_path, f"{args.backbone}_{args.dataset_type}_{{epoch:02d}}.keras")
        callbacks.append(Snapshot(template, metadata=metadata, model=train))
    if tensorboard is not None:
        callbacks.append(tensorboard)
    callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=2, verbose=1,
                                                       min_delta=1e-4, cooldown=0, min_lr=0))
    callbacks.append(keras.callbacks.TerminateOnNaN())
    if args.snapshots:
        log = os.path.join(args.snapshot_path, f"{args.backbone}_{args.dataset_type}.csv")
        callbacks.append(keras.callbacks.CSVLogger(log, append=args.snapshot is not None))
        from ..callbacks.eval import TrainingCurves

        callbacks.append(TrainingCurves(log))
    return callbacks


def main(args=None):
    """maskrcnn-train; returns 0 after training, or at once when --snapshot latest has reached
    --epochs (exits with status 2 on bad arguments, 1 when more images cannot be read than
    --max-bad-images allows; with --multi-worker 3 when another worker stopped)."""
    from ..utils.multi_worker import watching

    with watching():  # --multi-worker: the other workers learn how this one ends
        return _main(args)


def _main(argv=None):
    parser, args = parse_args(argv)
    run = resolve_run(parser, args)
    if run.finished:
        return 0
    common.plain_bad_image_warnings(parser.prog)
    common.select_gpu(args.gpu)
    from ..models import backbone as get_backbone  # after --gpu took effect
    from ..utils.distribution import distribution_scope

    workers = start_devices(parser, args)
    backbone = get_backbone(args.backbone)
    data = read_data(parser, args, run, backbone)
    with workers.scope() if workers else distribution_scope(args.multi_gpu):
        train, prediction, initial_epoch = build_or_load(parser, args, run, backbone, data.train.num_classes())
        return fit(args, run, data, train, prediction, initial_epoch, workers)


def start_devices(parser, args):
    """The `multi_worker.Workers` of --multi-worker, else None after setting up the devices of
    --multi-gpu; parser.error when they cannot be had."""
    from ..utils.distribution import configure_devices

    flag = "--multi-worker" if args.multi_worker else f"--multi-gpu {args.multi_gpu}"
    try:
        if args.multi_worker:
            return join_workers(args)
        configure_devices(args.multi_gpu)
    except ValueError as error:
        parser.error(f"{flag}: {error}")
    return None


@dataclasses.dataclass(frozen=True)
class Data:
    """The data of a run (see `read_data`).

    Args:
        train: the training set's generator.
        validation: the validation set's generator, or None.
        classes: the class names by label.
    """

    train: object
    validation: object
    classes: list


def read_data(parser, args, run, backbone):
    """The `Data` of the run; parser.error when a resumed snapshot has another class count. Prints
    the anchor coverage of the training set (and a warning when it is low)."""
    from ..preprocessing.anchor_coverage import coverage_line, coverage_warning

    train, validation = create_generators(parser, args, backbone, run.anchor_params)
    classes = common.class_names(train)
    saved_classes = run.snapshot_metadata.get("classes")
    if saved_classes is not None and len(saved_classes) != len(classes):
        parser.error(f"snapshot {args.snapshot!r} has {len(saved_classes)} classes, the data set {len(classes)}")
    coverage, fraction = coverage_line(train, run.anchor_params)  # objects with a positive anchor
    print(coverage)
    if coverage_warning(fraction):
        print(coverage_warning(fraction), file=sys.stderr)
    return Data(train, validation, classes)


def build_or_load(parser, args, run, backbone, num_classes):
    """(compiled training model, prediction model, first epoch): --snapshot's with its optimizer
    state, or new ones (`create_models`). Call within the distribution scope."""
    import keras

    from ..models import build_training_state

    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    if args.snapshot is not None:
        print(f"Loading snapshot {args.snapshot}, this may take a second...")
        train, prediction, initial_epoch = resume_models(parser, args)
    else:
        print("Creating model, this may take a second...")
        train, prediction = create_models(parser, args, backbone, num_classes, run.anchor_params, run.old_weights)
        initial_epoch = 0
    build_training_state(train)
    if args.run_eagerly:
        train.run_eagerly = True
    return train, prediction, initial_epoch


def fit(args, run, data, train, prediction, initial_epoch, workers=None):
    """Trains `train` from `initial_epoch` to --epochs with the callbacks; returns 0, or exits with
    status 1 when more images cannot be read than --max-bad-images allows."""
    from ..preprocessing.epoch_data import EpochData

    callbacks = create_callbacks(args, train, prediction, data.validation,
                                 snapshot_metadata(args, run.anchor_params, data.classes), train_generator=data.train,
                                 chief=workers is None or workers.is_chief, tensorboard_dir=run.tensorboard_dir)
    validation_data = EpochData(data.validation) if args.compute_val_loss else None
    epoch_data, steps = EpochData(data.train, args.steps), None
    if workers is not None:
        epoch_data, steps, more = worker_data(workers, train, data.train, args.steps)
        callbacks += more
    try:
        train.fit(epoch_data, epochs=args.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                  verbose=1 if workers is None or workers.is_chief else 0, callbacks=callbacks,
                  validation_data=validation_data)
    except TooManyBadImagesError as error:
        sys.exit(f"maskrcnn-train: error: {error}")
    return 0


def join_workers(args):
    """The `multi_worker.Workers` of --multi-worker, after checking --batch-size against them."""
    from ..utils import multi_worker

    workers = multi_worker.initialize()
    multi_worker.start_watch(workers, timeout=args.worker_timeout)
    workers.check_batch_size(args.batch_size)
    print(f"--multi-worker: worker {workers.worker_index} of {workers.num_workers}"
          f"{' (chief: writes snapshots and logs)' if workers.is_chief else ''}, {workers.replicas} model replicas "
          f"in all, {args.batch_size // workers.num_workers} images of every batch of {args.batch_size} read here")
    return workers


def worker_data(workers, train, generator, steps):
    """(what fit trains on, steps per epoch, extra callbacks) for this worker of --multi-worker:
    its shards of every global batch, and on TensorFlow the workarounds of
    multi_worker.prepare_for_fit plus a callback that reshuffles the batches at each epoch end
    (fit does not call the dataset's on_epoch_end through a distributed dataset)."""
    import keras

    from ..preprocessing.epoch_data import ShardedEpochData
    from ..utils import multi_worker

    shards, count = workers.local_shards()
    steps = steps or len(generator)
    data = ShardedEpochData(generator, steps, shards, count)
    if workers.strategy is None:
        return data, steps, []
    multi_worker.prepare_for_fit(train, data[0])
    reshuffle = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: generator.on_epoch_end())
    return workers.fit_data(data), steps, [reshuffle]


if __name__ == "__main__":
    main()
