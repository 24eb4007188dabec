"""What a prediction model is built with, as typed settings: one frozen dataclass per part.

    from keras_maskrcnn.models.settings import DetectionFilter, ModelSettings
    settings = ModelSettings(detection_filter=DetectionFilter(score_threshold=0.3, max_detections=50))
    model = backbone("resnet50").maskrcnn(num_classes=80, settings=settings)

- `DetectionFilter`: which decoded boxes become detections (`FilterDetections`);
- `BoxDecoding`: how regression outputs become boxes (`RegressBoxes`, `ClipBoxes`);
- `RoiAlignment`: how box features are pooled for the mask head (`RoiAlign`);
- `MaskHead`: the mask head's width and upsampling and how `DetectionMasks` runs it;
- anchors: `keras_maskrcnn.utils.anchors.AnchorParameters` (`Anchors` here), which has its own
  `get_config` / `from_config`.

`ModelSettings` holds one of each. Every part has `to_config()` (a JSON-ready dict) and
`from_config(config)`; `ModelSettings.to_config()` is what `save_model` stores in a `.keras` file's
metadata under "settings" and what an export's JSON records. The builders also take the flat keyword
arguments of earlier versions (score_threshold=..., clip_margin=..., roi_align={...}); `ModelSettings.
replace(**options)` turns them into settings, so every option is read in one place. keras-maskrcnn
0.2's models are `LEGACY`: the same settings with other values.

This module imports no Keras.
"""

import dataclasses

from .. import defaults
from ..utils.anchors import AnchorParameters

Anchors = AnchorParameters


def _tuple_or_number(value):
    """A number, or a list / tuple of numbers as a tuple of floats (hashable, frozen)."""
    if isinstance(value, (list, tuple)):
        return tuple(float(v) for v in value)
    return float(value)


def _json(value):
    return list(value) if isinstance(value, tuple) else value


class _Part:
    """to_config / from_config / replace for a frozen dataclass of plain values."""

    def to_config(self):
        """A JSON-ready dict of every field (tuples as lists)."""
        return {field.name: _json(getattr(self, field.name)) for field in dataclasses.fields(self)}

    @classmethod
    def from_config(cls, config):
        """The settings `config` (a dict from `to_config`) describes; missing fields keep their defaults.

        Raises:
            ValueError: naming the keys this part does not have.
        """
        config = dict(config or {})
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ValueError(f"{cls.__name__} has no setting {', '.join(map(repr, unknown))}; "
                             f"its settings are {', '.join(sorted(names))}")
        return cls(**config)

    def replace(self, **changes):
        """A copy with `changes` (field=value) applied."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class DetectionFilter(_Part):
    """Which decoded boxes become detections (see `keras_maskrcnn.layers.FilterDetections`).

    Args:
        nms: run non-maximum suppression.
        class_specific_filter: suppress and threshold per class (else one label per box, its best class).
        score_threshold: lowest score kept.
        nms_threshold: IoU above which the lower-scored box is suppressed.
        max_detections: N, the rows of boxes (B, N, 4), scores, labels and masks (padding: -1).
        pre_nms_top_k: boxes per class (or in all) kept by score before NMS.
        top_k_blocks: the pre-NMS top-k by blocks of this size (0: one top_k; the OpenVINO export form).
    """

    nms: bool = True
    class_specific_filter: bool = True
    score_threshold: float = defaults.SCORE_THRESHOLD
    nms_threshold: float = defaults.NMS_THRESHOLD
    max_detections: int = defaults.MAX_DETECTIONS
    pre_nms_top_k: int = defaults.PRE_NMS_TOP_K
    top_k_blocks: int = 0


@dataclasses.dataclass(frozen=True)
class BoxDecoding(_Part):
    """How the regression output (B, A, 4) becomes boxes (see `RegressBoxes` and `ClipBoxes`).

    Args:
        regression_mean: one number or 4, added to the deltas times regression_std.
        regression_std: one number or 4 (0.2: keras-retinanet's).
        clip_margin: boxes are clipped to [0, size - clip_margin] (1: keras-retinanet 1.0's last pixel).
    """

    regression_mean: object = 0.0
    regression_std: object = 0.2
    clip_margin: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "regression_mean", _tuple_or_number(self.regression_mean))
        object.__setattr__(self, "regression_std", _tuple_or_number(self.regression_std))
        object.__setattr__(self, "clip_margin", float(self.clip_margin))


@dataclasses.dataclass(frozen=True)
class RoiAlignment(_Part):
    """How each box's features are pooled for the mask head (see `keras_maskrcnn.layers.RoiAlign`).

    Args:
        crop_size: (height, width) of the pooled features (14, 14).
        sampling_ratio: samples per bin along each axis ("aligned" sampling).
        strides: strides of the feature maps given (P3..P7).
        canonical_size: a box of canonical_size pixels is pooled from level canonical_level...
        canonical_level: ...counted from P3 = 0 (as `pyramid_level` says).
        sampling: "aligned" (torchvision's roi_align(aligned=True)) or "crop_and_resize"
            (keras-maskrcnn 0.2's, whose layer also takes the image).
        low_rank: the same pooling with tensors of at most 5 dimensions (the LiteRT export form).
    """

    crop_size: tuple = (14, 14)
    sampling_ratio: int = 2
    strides: tuple = (8, 16, 32, 64, 128)
    canonical_size: float = 224.0
    canonical_level: int = 1
    sampling: str = "aligned"
    low_rank: bool = False

    def __post_init__(self):
        object.__setattr__(self, "crop_size", tuple(int(c) for c in self.crop_size))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        object.__setattr__(self, "canonical_size", float(self.canonical_size))

    @classmethod
    def from_layer_config(cls, config):
        """The settings of a `RoiAlign` layer config (its name, dtype and other Layer keys left out)."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in dict(config or {}).items() if key in names})


@dataclasses.dataclass(frozen=True)
class MaskHead(_Part):
    """The mask head and how the prediction model runs it (see `mask_submodel`, `DetectionMasks`).

    Args:
        feature_size: channels of the head's convolutions (256, as in keras-maskrcnn); read when a
            head is built, not when a prediction model reuses one.
        upsampling: "transposed" (a 2x2 stride-2 transposed conv, the paper's) or "nearest"
            (keras-maskrcnn's); None: "nearest" for a legacy model, else "transposed".
        mask_dtype: dtype of the masks output (None: float32).
        row_selection: how `DetectionMasks` runs the head on the rows holding detections: "switch"
            (every backend), "slice" or "all" (the export forms).
        buckets: row counts the head may run on (None: 0, N/8, N/4, N/2 and N).
    """

    feature_size: int = 256
    upsampling: object = None
    mask_dtype: object = None
    row_selection: str = "switch"
    buckets: object = None

    def __post_init__(self):
        if self.buckets is not None:
            object.__setattr__(self, "buckets", tuple(int(b) for b in self.buckets))


# Flat keyword arguments of the builders -> (part, field).
_FLAT = {name: ("detection_filter", name) for name in (f.name for f in dataclasses.fields(DetectionFilter))}
_FLAT.update({name: ("box_decoding", name) for name in (f.name for f in dataclasses.fields(BoxDecoding))})
_FLAT.update(mask_feature_size=("mask_head", "feature_size"), mask_upsampling=("mask_head", "upsampling"),
             mask_dtype=("mask_head", "mask_dtype"), row_selection=("mask_head", "row_selection"),
             buckets=("mask_head", "buckets"))
FLAT_OPTIONS = tuple(sorted(_FLAT) + ["anchor_params", "roi_align"])
"""The keyword arguments `ModelSettings.replace` takes besides the parts themselves."""


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Everything a prediction model is built with besides its backbone, class count and weights.

    Args:
        anchors: `AnchorParameters` (None: `AnchorParameters.default`).
        detection_filter: `DetectionFilter` (None: its defaults).
        box_decoding: `BoxDecoding` (None: its defaults).
        roi_alignment: `RoiAlignment` (None: its defaults).
        mask_head: `MaskHead` (None: its defaults).
    """

    anchors: AnchorParameters = None
    detection_filter: DetectionFilter = None
    box_decoding: BoxDecoding = None
    roi_alignment: RoiAlignment = None
    mask_head: MaskHead = None

    PARTS = {"detection_filter": DetectionFilter, "box_decoding": BoxDecoding, "roi_alignment": RoiAlignment,
             "mask_head": MaskHead}

    def __post_init__(self):
        object.__setattr__(self, "anchors", self.anchors or AnchorParameters.default)
        for name, cls in self.PARTS.items():
            value = getattr(self, name)
            if value is None:
                value = cls()
            elif isinstance(value, dict):
                value = cls.from_config(value)
            elif not isinstance(value, cls):
                raise TypeError(f"ModelSettings.{name} must be a {cls.__name__}, got {type(value).__name__}")
            object.__setattr__(self, name, value)

    def replace(self, anchor_params=None, roi_align=None, **options):
        """A copy with the parts and flat options given applied (None leaves a setting as it is).

        Args:
            anchor_params: `AnchorParameters` or its config.
            roi_align: a `RoiAlign` layer config or `RoiAlignment` (the whole alignment).
            options: parts by name (anchors=..., detection_filter=...), or the flat options of
                earlier versions: the fields of `DetectionFilter` and `BoxDecoding` by their names,
                mask_feature_size, mask_upsampling, mask_dtype, row_selection, buckets.

        Raises:
            TypeError: naming an option no part has.
        """
        changes, per_part = {}, {}
        if anchor_params is not None:
            changes["anchors"] = (AnchorParameters.from_config(anchor_params) if isinstance(anchor_params, dict)
                                  else anchor_params)
        if roi_align is not None:
            changes["roi_alignment"] = (roi_align if isinstance(roi_align, RoiAlignment)
                                        else RoiAlignment.from_layer_config(roi_align))
        for key, value in options.items():
            if key == "anchors" or key in self.PARTS:
                if value is not None:
                    changes[key] = value
            elif key in _FLAT:
                part, field = _FLAT[key]
                if value is not None:
                    per_part.setdefault(part, {})[field] = value
            else:
                raise TypeError(f"unknown model setting {key!r}; the settings are "
                                f"{', '.join(FLAT_OPTIONS)} (or the parts {', '.join(self.PARTS)}, anchors)")
        result = dataclasses.replace(self, **changes)
        for part, fields in per_part.items():
            result = dataclasses.replace(result, **{part: getattr(result, part).replace(**fields)})
        return result

    def to_config(self):
        """A JSON-ready dict: anchors (AnchorParameters' config) and each part's `to_config()`."""
        return dict(anchors=self.anchors.get_config(),
                    **{name: getattr(self, name).to_config() for name in self.PARTS})

    @classmethod
    def from_config(cls, config):
        """The settings of a `to_config()` dict; missing parts keep their defaults.

        Raises:
            ValueError: naming a key that is neither anchors nor a part.
        """
        config = dict(config or {})
        unknown = sorted(set(config) - set(cls.PARTS) - {"anchors"})
        if unknown:
            raise ValueError(f"ModelSettings has no part {', '.join(map(repr, unknown))}")
        anchors = config.pop("anchors", None)
        return cls(anchors=AnchorParameters.from_config(anchors) if anchors else None,
                   **{name: cls.PARTS[name].from_config(value) for name, value in config.items()})

    @classmethod
    def from_metadata(cls, metadata, base=None):
        """`base` (default: the defaults) with what a `.keras` file's metadata records: its
        "settings" (a `to_config()` dict), else the anchor_params and flat "filter" options that
        snapshots record."""
        settings = base or cls()
        metadata = metadata or {}
        if metadata.get("settings"):
            return cls.from_config(metadata["settings"])
        return settings.replace(anchor_params=metadata.get("anchor_params") or None, **metadata.get("filter", {}))

    def resolved_upsampling(self):
        """The mask head's upsampling, "transposed" unless set."""
        return self.mask_head.upsampling or "transposed"


LEGACY = ModelSettings(box_decoding=BoxDecoding(clip_margin=1.0), roi_alignment=RoiAlignment(sampling="crop_and_resize"),
                       mask_head=MaskHead(upsampling="nearest"))
"""keras-maskrcnn 0.2's settings after the backbone: RoIAlign by crop_and_resize, boxes clipped to the
last pixel (keras-retinanet 1.0's ClipBoxes), nearest upsampling in the mask head."""
