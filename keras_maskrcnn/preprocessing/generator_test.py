import multiprocessing
import warnings

import numpy as np
import pytest

from keras_maskrcnn.preprocessing.generator import Generator, box_iou_pairwise, jitter_boxes
from keras_maskrcnn.utils.anchors import anchors_for_shape
from keras_maskrcnn.utils.image import UnreadableImageError
from keras_maskrcnn.utils.masks import roi_mask_targets
from keras_maskrcnn.utils.transform import random_transform_generator


def rectangle(shape, box):
    mask = np.zeros(shape[:2], dtype=np.uint8)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = 1
    return mask


class MemoryGenerator(Generator):
    """Generator over in-memory images: entries of (image, [(label, box, mask), ...])."""

    def __init__(self, entries, num_classes=3, **kwargs):
        self.entries = entries
        self.classes = num_classes
        super().__init__(**kwargs)

    def size(self):
        return len(self.entries)

    def num_classes(self):
        return self.classes

    def has_label(self, label):
        return 0 <= label < self.classes

    def has_name(self, name):
        return name in [str(i) for i in range(self.classes)]

    def name_to_label(self, name):
        return int(name)

    def label_to_name(self, label):
        return str(label)

    def image_path(self, image_index):
        return f"memory/{image_index}.png"

    def image_aspect_ratio(self, image_index):
        image = self.entries[image_index][0]
        return image.shape[1] / image.shape[0]

    def image_size(self, image_index):
        return self.entries[image_index][0].shape[:2]

    def load_image(self, image_index):
        return self.entries[image_index][0]

    def load_annotations(self, image_index):
        objects = self.entries[image_index][1]
        return {
            "labels": np.array([o[0] for o in objects], dtype=np.int64),
            "bboxes": np.array([o[1] for o in objects], dtype=np.float64).reshape(-1, 4),
            "masks": [o[2] for o in objects],
        }


def make_entry(shape, boxes, labels=None, rng=None):
    rng = rng or np.random.default_rng(0)
    image = rng.integers(0, 256, size=shape + (3,), dtype=np.uint8)
    labels = labels or [i % 3 for i in range(len(boxes))]
    return image, [(label, box, rectangle(shape, box)) for label, box in zip(labels, boxes)]


def small_kwargs(**kwargs):
    defaults = dict(image_min_side=96, image_max_side=160, mask_rois_per_image=16, seed=3)
    defaults.update(kwargs)
    return defaults


def test_batch_format_shapes_and_dtypes():
    entries = [make_entry((60, 90), [(5, 5, 40, 30), (30, 20, 80, 55)]),
               make_entry((80, 60), [(10, 10, 50, 70)]),
               make_entry((70, 70), [(0, 0, 70, 70)])]
    generator = MemoryGenerator(entries, batch_size=2, group_method="none", shuffle_groups=False,
                                **small_kwargs(mask_size=14, roi_jitter=2))
    assert len(generator) == 2
    inputs, targets = generator[0]
    assert set(inputs) == {"image", "rois"} and set(targets) == {"regression", "classification", "masks"}
    images, rois = inputs["image"], inputs["rois"]
    # 60x90 -> 96x144, 80x60 -> 128x96 (then 160 max): batch 128x144, multiples of 32 -> 128x160
    assert images.shape == (2, 128, 160, 3) and images.dtype == np.float32
    assert rois.shape == (2, 16, 4) and rois.dtype == np.float32
    anchors = anchors_for_shape((128, 160))
    assert targets["regression"].shape == (2, anchors.shape[0], 4)
    assert targets["classification"].shape == (2, anchors.shape[0]) and targets["classification"].dtype == np.int8
    assert targets["masks"].shape == (2, 16, 1 + 14 * 14)
    assert targets["regression"].dtype == np.float32 and targets["masks"].dtype == np.float32
    positive = targets["classification"] >= 0
    assert positive.any() and np.isfinite(targets["regression"][positive]).all()
    assert np.isnan(targets["regression"][~positive]).all()
    # image 0: two boxes + 2 copies each; image 1: one box + 2 copies
    labels = targets["masks"][:, :, 0]
    assert (labels[0, :6] >= 0).all() and (labels[0, 6:] == -1).all()
    assert (labels[1, :3] == 0).all() and (labels[1, 3:] == -1).all()
    assert not rois[0, 6:].any() and not rois[1, 3:].any()
    assert not targets["masks"][0, 6:, 1:].any()
    assert set(np.unique(targets["masks"][:, :, 1:])) <= {0.0, 1.0}
    # padding beyond the resized image is zero, the image itself is caffe-preprocessed
    assert not images[0, 96:].any() and not images[0, :, 144:].any()
    np.testing.assert_allclose(images[0, 0, 0] + [103.939, 116.779, 123.68],
                               entries[0][0][0, 0].astype(np.float32), atol=40)


def test_ground_truth_rois_first_and_scaled():
    entry = make_entry((50, 100), [(10, 5, 40, 45), (50, 10, 90, 40)], labels=[2, 1])
    generator = MemoryGenerator([entry], group_method="none", **small_kwargs(image_min_side=100, image_max_side=400))
    inputs, targets = generator[0]
    np.testing.assert_allclose(inputs["rois"][0, :2], [[20, 10, 80, 90], [100, 20, 180, 80]])
    np.testing.assert_array_equal(targets["masks"][0, :4, 0], [2, 1, 2, 1])
    # a box-shaped mask sampled into its own box is all ones
    assert targets["masks"][0, :2, 1:].all()


def test_rois_and_mask_targets_correspond_row_by_row():
    rng = np.random.default_rng(5)
    shape = (120, 160)
    boxes = [(5, 5, 60, 50), (40, 30, 120, 110), (100, 10, 155, 70)]
    image = rng.integers(0, 256, size=shape + (3,), dtype=np.uint8)
    masks = []
    for x1, y1, x2, y2 in boxes:
        mask = np.zeros(shape, np.uint8)
        yy, xx = np.mgrid[:shape[0], :shape[1]]
        mask[((xx - (x1 + x2) / 2) / ((x2 - x1) / 2)) ** 2 + ((yy - (y1 + y2) / 2) / ((y2 - y1) / 2)) ** 2 <= 1] = 1
        masks.append(mask)
    entry = (image, [(i, box, mask) for i, (box, mask) in enumerate(zip(boxes, masks))])
    generator = MemoryGenerator([entry], **small_kwargs(image_min_side=120, image_max_side=160, roi_jitter=3))
    inputs, targets = generator[0]
    rois = inputs["rois"][0]
    rows = targets["masks"][0]
    valid = rows[:, 0] >= 0
    assert valid.sum() == 12
    for roi, row in zip(rois[valid], rows[valid]):
        owner = int(row[0])
        expected = roi_mask_targets(masks[owner], roi[None], 28).reshape(-1)
        np.testing.assert_array_equal(row[1:], expected)
        assert box_iou_pairwise(roi.astype(np.float64), np.array(boxes[owner], np.float64)) >= 0.5


def test_jitter_boxes_iou_and_bounds():
    rng = np.random.default_rng(0)
    boxes = np.array([[10, 10, 50, 40], [0, 0, 5, 5], [90, 60, 100, 80]], dtype=np.float64)
    jittered = jitter_boxes(boxes, 20, (80, 100), rng)
    assert jittered.shape == (60, 4)
    assert (box_iou_pairwise(jittered, np.repeat(boxes, 20, axis=0)) >= 0.5).all()
    assert (jittered[:, 0::2] >= 0).all() and (jittered[:, 0::2] <= 100).all()
    assert (jittered[:, 1::2] >= 0).all() and (jittered[:, 1::2] <= 80).all()
    assert not np.allclose(jittered[:20], boxes[0])
    assert jitter_boxes(np.zeros((0, 4)), 3, (10, 10), rng).shape == (0, 4)


def test_more_objects_than_rois_subsamples_ground_truth():
    boxes = [(x, y, x + 8, y + 8) for x in range(0, 96, 12) for y in range(0, 48, 12)]
    generator = MemoryGenerator([make_entry((48, 96), boxes)], **small_kwargs(
        image_min_side=48, image_max_side=96, mask_rois_per_image=10, roi_jitter=2))
    inputs, targets = generator[0]
    rois = inputs["rois"][0].astype(np.float64)
    assert (targets["masks"][0, :, 0] >= 0).all()
    # every RoI is one of the ground-truth boxes, no duplicates
    ious = box_iou_pairwise(rois[:, None], np.array(boxes, np.float64)[None])
    assert np.allclose(ious.max(axis=1), 1.0)
    assert len({tuple(r) for r in rois}) == 10


def test_shards_of_a_batch_share_its_shapes_and_split_its_images():
    # Two images of a batch of 4 are larger or hold more objects than the others: every shard
    # must be padded to what the whole batch needs, and the shards must hold the batch's images.
    entries = [make_entry((64, 64), [(4, 4, 30, 30)]), make_entry((64, 96), [(4, 4, 30, 30)] * 9),
               make_entry((48, 64), [(10, 10, 40, 40)]), make_entry((64, 80), [(4, 4, 20, 20)] * 2)]
    kwargs = dict(image_min_side=64, image_max_side=96, shuffle_groups=False, group_method="none", seed=0,
                  batch_size=4, mask_rois_per_image=64)
    whole = MemoryGenerator(entries, **kwargs)[0]
    shards = [MemoryGenerator(entries, **kwargs).shard(i, 2)[0] for i in range(2)]
    assert whole[0]["image"].shape == (4, 64, 96, 3) and whole[0]["rois"].shape[1] == 32  # 9 boxes + 9 copies
    for inputs, targets in shards:
        assert inputs["image"].shape == (2, 64, 96, 3) and inputs["rois"].shape == (2, 32, 4)
        assert targets["classification"].shape == whole[1]["classification"][:2].shape
        assert targets["masks"].shape == (2, 32, 1 + 28 * 28)
    # The shards hold the batch's images in order (flips aside: compare the unflipped pixel sums).
    generator = MemoryGenerator(entries, **kwargs)
    sums = sorted(float(np.abs(generator.preprocess_image(generator.resize_image(e[0])[0])).sum()) for e in entries)
    shard_sums = sorted(float(np.abs(image).sum()) for inputs, _ in shards for image in inputs["image"])
    assert np.allclose(sums, shard_sums, rtol=1e-5)
    # The same shard twice gives the same batch (its own random streams, from the seed).
    again = MemoryGenerator(entries, **kwargs).shard(1, 2)[0]
    assert np.array_equal(again[0]["image"], shards[1][0]["image"])
    assert np.array_equal(again[0]["rois"], shards[1][0]["rois"])
    with pytest.raises(ValueError, match="the batch size 4 must be a multiple of the 3 shards"):
        generator.shard(0, 3)
    with pytest.raises(ValueError, match="shard 2 of 2 does not exist"):
        generator.shard(2, 2)


def test_roi_rows_are_padded_to_the_next_multiple_only():
    entries = [make_entry((64, 64), [(4, 4, 30, 30)] * 3), make_entry((64, 64), [(4, 4, 20, 20)] * 10)]
    kwargs = dict(image_min_side=64, image_max_side=64, shuffle_groups=False, group_method="none", seed=0)
    generator = MemoryGenerator(entries, mask_rois_per_image=64, **kwargs)
    few, many = generator[0], generator[1]
    assert few[0]["rois"].shape == (1, 16, 4) and few[1]["masks"].shape == (1, 16, 1 + 28 * 28)  # 3 + 3 copies
    assert many[0]["rois"].shape == (1, 32, 4) and many[1]["masks"].shape == (1, 32, 1 + 28 * 28)  # 10 + 10
    capped = MemoryGenerator(entries[1:], mask_rois_per_image=12, **kwargs)[0]
    assert capped[0]["rois"].shape == (1, 12, 4) and (capped[1]["masks"][0, :, 0] >= 0).all()
    fixed = MemoryGenerator(entries[:1], mask_rois_per_image=64, mask_rois_multiple=0, **kwargs)[0]
    assert fixed[0]["rois"].shape == (1, 64, 4) and (fixed[1]["masks"][0, 6:, 0] == -1).all()
    empty = MemoryGenerator([(entries[0][0], [])], mask_rois_per_image=64, **kwargs)[0]
    assert empty[0]["rois"].shape == (1, 16, 4) and (empty[1]["masks"][..., 0] == -1).all()


def test_image_without_annotations_gives_valid_targets():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    generator = MemoryGenerator([(image, [])], **small_kwargs())
    inputs, targets = generator[0]
    assert not inputs["rois"].any()
    assert (targets["masks"][:, :, 0] == -1).all() and not targets["masks"][:, :, 1:].any()
    classes = targets["classification"][0]
    assert set(np.unique(classes)) <= {-1, -2} and (classes == -1).any()
    assert np.isnan(targets["regression"]).all()


def test_invalid_annotations_are_dropped_with_warnings():
    shape = (40, 50)
    good = (0, (5, 5, 20, 20), rectangle(shape, (5, 5, 20, 20)))
    objects = [
        good,
        (1, (20, 5, 20, 30), rectangle(shape, (10, 5, 30, 30))),     # x2 <= x1
        (1, (10, 30, 30, 25), rectangle(shape, (10, 5, 30, 30))),    # y2 <= y1
        (1, (-3, 5, 20, 20), rectangle(shape, (0, 5, 20, 20))),      # negative
        (1, (30, 5, 60, 20), rectangle(shape, (30, 5, 50, 20))),     # beyond the image
        (2, (25, 25, 45, 35), rectangle(shape, (0, 0, 10, 10))),     # mask empty inside its box
        (7, (5, 5, 20, 20), rectangle(shape, (5, 5, 20, 20))),       # unknown label
    ]
    image = np.zeros(shape + (3,), dtype=np.uint8)
    generator = MemoryGenerator([(image, objects)], **small_kwargs())
    with pytest.warns(UserWarning) as record:
        inputs, targets = generator[0]
    messages = [str(w.message) for w in record]
    assert len(messages) == 6
    for index, text in zip(range(1, 7), messages):
        assert "memory/0.png" in text and f"annotation {index} dropped" in text
    assert "x2 <= x1" in messages[0] and "outside" in messages[2] and "empty" in messages[4]
    labels = targets["masks"][0, :, 0]
    assert set(labels[labels >= 0]) == {0}


def test_same_seed_same_batches_and_epochs_differ():
    entries = [make_entry((64, 64), [(8, 8, 40, 40), (30, 20, 60, 60)], rng=np.random.default_rng(i)) for i in range(4)]
    kwargs = small_kwargs(batch_size=2, transform_generator=random_transform_generator(flip_x_chance=0.5))
    first = MemoryGenerator(entries, **kwargs)
    second = MemoryGenerator(entries, **kwargs)
    assert first.groups == second.groups
    for index in range(len(first)):
        a, b = first[index], second[index]
        np.testing.assert_array_equal(a[0]["rois"], b[0]["rois"])
        np.testing.assert_array_equal(a[0]["image"], b[0]["image"])
        np.testing.assert_array_equal(a[1]["masks"], b[1]["masks"])
    before = first[0][0]["rois"]
    first.on_epoch_end()
    assert first.epoch == 1
    assert not np.array_equal(before, first[0][0]["rois"])


def test_grouping_methods():
    entries = [make_entry(shape, []) for shape in [(30, 90), (90, 30), (40, 60), (60, 40), (50, 50)]]
    ratio = MemoryGenerator(entries, batch_size=2, group_method="ratio", shuffle_groups=False, **small_kwargs())
    assert ratio.groups == [[1, 3], [4, 2], [0, 1]]
    none = MemoryGenerator(entries, batch_size=2, group_method="none", shuffle_groups=False, **small_kwargs())
    assert none.groups == [[0, 1], [2, 3], [4, 0]]
    random = MemoryGenerator(entries, batch_size=5, group_method="random", **small_kwargs())
    assert sorted(random.groups[0]) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="group_method"):
        MemoryGenerator(entries, group_method="aspect")


def test_transform_keeps_masks_inside_boxes():
    entry = make_entry((80, 80), [(10, 10, 40, 30), (45, 40, 75, 70)])
    generator = MemoryGenerator([entry], **small_kwargs(
        image_min_side=80, image_max_side=80,
        transform_generator=random_transform_generator(min_rotation=-0.5, max_rotation=0.5, flip_x_chance=0.5,
                                                       min_scaling=(0.9, 0.9), max_scaling=(1.1, 1.1))))
    for seed in range(5):
        image, annotations = generator.random_transform_group_entry(
            entry[0], generator.load_annotations_group([0])[0], rng=np.random.default_rng(seed))
        for box, mask in zip(annotations["bboxes"], annotations["masks"]):
            x1, y1, x2, y2 = box.astype(int)
            assert mask[y1:y2, x1:x2].sum() == mask.sum() > 0
            assert mask[y1:y2, x1].any() and mask[y1:y2, x2 - 1].any()
            assert mask[y1, x1:x2].any() and mask[y2 - 1, x1:x2].any()


def test_transform_moving_objects_out_drops_them():
    entry = make_entry((40, 40), [(2, 2, 10, 10), (25, 25, 38, 38)])
    generator = MemoryGenerator([entry], **small_kwargs())
    shift = np.array([[1, 0, -0.5], [0, 1, 0], [0, 0, 1]])  # half the image width to the left
    _, annotations = generator.random_transform_group_entry(entry[0], generator.load_annotations_group([0])[0],
                                                            transform=shift)
    assert len(annotations["masks"]) == 1 and annotations["labels"].tolist() == [1]
    np.testing.assert_array_equal(annotations["bboxes"], [[5, 25, 18, 38]])


def test_visual_effects_change_only_the_image():
    from keras_maskrcnn.utils.image import random_visual_effect_generator
    entry = make_entry((64, 64), [(8, 8, 40, 40)])
    plain = MemoryGenerator([entry], **small_kwargs())
    effects = MemoryGenerator([entry], **small_kwargs(visual_effect_generator=random_visual_effect_generator(
        brightness_range=(0.2, 0.3))))
    a, b = plain[0], effects[0]
    assert not np.array_equal(a[0]["image"], b[0]["image"])
    np.testing.assert_array_equal(a[1]["classification"], b[1]["classification"])


def test_plain_python_generators_are_accepted():
    def flips():
        while True:
            yield np.diag([-1.0, 1.0, 1.0])

    entry = make_entry((64, 64), [(0, 0, 20, 64)])
    generator = MemoryGenerator([entry], **small_kwargs(image_min_side=64, image_max_side=64,
                                                        transform_generator=flips()))
    inputs, _ = generator[0]
    np.testing.assert_allclose(inputs["rois"][0, 0], [44, 0, 64, 64])


def test_mask_targets_bounded_memory_for_100_instances():
    """1333x800 image with 100 instances: the targets take < 1 % of the seed's dense layout."""
    height, width = 800, 1333
    rng = np.random.default_rng(0)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    x1 = rng.integers(0, width - 100, 100)
    y1 = rng.integers(0, height - 100, 100)
    boxes = [(int(a), int(b), int(a) + 60, int(b) + 80) for a, b in zip(x1, y1)]
    objects = [(i % 3, box, rectangle((height, width), box)) for i, box in enumerate(boxes)]
    generator = MemoryGenerator([(image, objects)], mask_rois_per_image=128, seed=0)
    inputs, targets = generator[0]
    batch = inputs["image"].shape[0]
    assert (targets["masks"][0, :, 0] >= 0).sum() == 128
    dense_bytes = batch * 100 * height * width * np.dtype(np.float32).itemsize
    layout_bytes = targets["masks"].nbytes + inputs["rois"].nbytes
    assert layout_bytes < 0.01 * dense_bytes, (layout_bytes, dense_bytes)


def test_parameter_validation():
    with pytest.raises(ValueError, match="batch_size"):
        MemoryGenerator([], batch_size=0)
    with pytest.raises(ValueError, match="mask_rois_per_image"):
        MemoryGenerator([], mask_rois_per_image=0)
    generator = MemoryGenerator([])
    assert len(generator) == 0
    with pytest.raises(IndexError):
        generator[0]


def test_bad_annotation_dict_is_reported():
    class Broken(MemoryGenerator):
        def load_annotations(self, image_index):
            return {"labels": [0], "bboxes": [[0, 0, 5, 5]], "masks": []}

    generator = Broken([make_entry((20, 20), [])], **small_kwargs())
    with pytest.raises(ValueError, match="memory/0.png.*1 labels, 1 boxes and 0 masks"):
        generator[0]


def test_fit_accepts_the_generator_with_workers():
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
    entries = [make_entry((64, 64), [(8, 8, 40, 40)], rng=np.random.default_rng(i)) for i in range(4)]
    generator = MemoryGenerator(entries, workers=2, **small_kwargs(image_min_side=64, image_max_side=64))
    adapter = PyDatasetAdapter(generator)
    adapter.on_epoch_begin()
    batches = list(adapter.get_numpy_iterator())
    adapter.on_epoch_end()
    assert len(batches) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for inputs, targets in batches:
            assert inputs["image"].shape == (1, 64, 64, 3)


class BrokenGenerator(MemoryGenerator):
    """MemoryGenerator whose images in `broken` cannot be read."""

    def __init__(self, entries, broken, **kwargs):
        self.broken = set(broken)
        super().__init__(entries, **kwargs)

    def load_image(self, image_index):
        if image_index in self.broken:
            raise UnreadableImageError(f"image file {self.image_path(image_index)!r} could not be read: broken")
        return super().load_image(image_index)


def _batch_images(generator, index):
    return generator[index][0]["image"]


def test_bad_images_found_in_worker_processes_reach_the_main_process():
    entries = [make_entry((64, 64), [(5, 5, 40, 30)], rng=np.random.default_rng(i)) for i in range(6)]
    generator = BrokenGenerator(entries, broken=[1, 4], batch_size=2, group_method="none", shuffle_groups=False,
                                skip_bad_images=True, use_multiprocessing=True, **small_kwargs())
    context = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with context.Pool(2) as pool:
            batches = pool.starmap(_batch_images, [(generator, index) for index in range(len(generator))])
    assert [batch.shape[0] for batch in batches] == [2, 2, 2]
    assert list(sorted(generator.bad_images.messages())) == ["memory/1.png", "memory/4.png"]
    assert sorted(generator.bad_images.events()) == ["memory/1.png", "memory/4.png"]
    assert generator.bad_images.messages()["memory/4.png"] == "image file 'memory/4.png' could not be read: broken"


def test_replacement_is_readable_and_not_the_bad_image():
    entries = [make_entry((64, 64), [(5, 5, 40, 30)], rng=np.random.default_rng(i)) for i in range(4)]
    generator = BrokenGenerator(entries, broken=[0, 1, 2], batch_size=1, group_method="none", shuffle_groups=False,
                                skip_bad_images=True, **small_kwargs())
    with pytest.warns(UserWarning, match="replaced in this batch by 'memory/3.png'"):
        group, images, _ = generator.load_group([0], np.random.default_rng(0))
    assert group == [3] and images[0] is entries[3][0]
    everything = BrokenGenerator(entries, broken=[0, 1, 2, 3], skip_bad_images=True, **small_kwargs())
    with pytest.raises(ValueError, match="no image of the data set can be read"):
        everything.load_group([0])
