"""Data pipeline throughput on tinycoco, and target memory of this layout against the seed's.

    .venv/bin/python benchmarks/data.py [--data-dir ../shared/data/tinycoco] [--set train2017]
                                        [--epochs 2] [--no-model] [--augmentations none,full]
                                        [--layouts compact]

Prints batches per second at the default resize (min side 800, max side 1333), batch size 1,
without augmentation, with the default training augmentation (flip x) and with full
augmentation (flips, rotation, translation, shear, scaling, visual effects), read in the main
process (workers 0) and with 2 worker threads / processes, for two anchor target layouts:
'compact' (this package's: (B, A, 4) float32 deltas + (B, A) int8 classes) and 'dense'
(keras-retinanet's, which this package used before: (B, A, 5) + (B, A, C + 1) float32, made
here by expanding the compact targets in the generator, so the batches cost what they did).
Then the bytes per batch: this layout's mask targets (B x M x (1 + 28 * 28) float32 plus the
RoIs) against the seed's dense masks (B x max annotations x (7 + H * W) float32: box, label,
size, full-image mask), and the anchor targets in both layouts, and the milliseconds a worker
process takes to hand a batch over (shared_batches: a new file, or a reused one, in /dev/shm).
Last, unless --no-model, the time of one training step of the ResNet50 training model at
batch size 1 on the same data.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from keras_maskrcnn.preprocessing.coco import CocoGenerator  # noqa: E402
from keras_maskrcnn.utils.anchors import dense_targets  # noqa: E402
from keras_maskrcnn.utils.image import random_visual_effect_generator  # noqa: E402
from keras_maskrcnn.utils.transform import default_transform_generator, random_transform_generator  # noqa: E402

MB = 1024.0 * 1024.0


class DenseTargetsCocoGenerator(CocoGenerator):
    """CocoGenerator yielding keras-retinanet's dense anchor targets (the earlier layout)."""

    def compute_targets(self, image_group, annotations_group):
        targets = super().compute_targets(image_group, annotations_group)
        targets["regression"], targets["classification"] = dense_targets(
            targets["regression"], targets["classification"], self.num_classes())
        return targets


LAYOUTS = {"compact": CocoGenerator, "dense": DenseTargetsCocoGenerator}


def augmentations():
    full = random_transform_generator(min_rotation=-0.1, max_rotation=0.1, min_translation=(-0.1, -0.1),
                                      max_translation=(0.1, 0.1), min_shear=-0.1, max_shear=0.1,
                                      min_scaling=(0.9, 0.9), max_scaling=(1.1, 1.1), flip_x_chance=0.5)
    return {
        "none": {},
        "flip-x (default)": {"transform_generator": default_transform_generator()},
        "full": {"transform_generator": full, "visual_effect_generator": random_visual_effect_generator()},
    }


def batches_per_second(generator, epochs):
    """Batches per second over `epochs` passes, as keras.Model.fit would draw them."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(generator)
    count = 0
    start = time.perf_counter()
    for _ in range(epochs):
        adapter.on_epoch_begin()
        for _batch in adapter.get_numpy_iterator():
            count += 1
        adapter.on_epoch_end()
    return count / (time.perf_counter() - start)


def target_bytes(generator):
    """Mean bytes per batch: this layout's mask targets + RoIs, the seed's dense masks, the
    compact and the dense anchor targets, and the image."""
    sums = dict(ours=[], dense=[], compact_anchor=[], dense_anchor=[], image=[])
    for index in range(len(generator)):
        group = generator.groups[index]
        inputs, targets = generator[index]
        batch, height, width = inputs["image"].shape[:3]
        most = max(len(generator.load_annotations(i)["labels"]) for i in group)
        sums["ours"].append(targets["masks"].nbytes + inputs["rois"].nbytes)
        sums["dense"].append(batch * most * (7 + height * width) * 4)
        sums["compact_anchor"].append(targets["regression"].nbytes + targets["classification"].nbytes)
        expanded = dense_targets(targets["regression"], targets["classification"], generator.num_classes())
        sums["dense_anchor"].append(sum(array.nbytes for array in expanded))
        sums["image"].append(inputs["image"].nbytes)
    return {key: float(np.mean(values)) for key, values in sums.items()}


def transfer_milliseconds(generator, count=8):
    """Milliseconds per batch to hand `count` batches from a worker to the training process
    through shared_batches, each read and dropped before the next as in steady training, in this
    process for both sides: {writing a new file, writing into the released file of the batch
    before (reused), mapping the file in the training process}."""
    import gc
    import pickle

    from keras_maskrcnn.preprocessing import shared_batches

    batches = [generator[index] for index in range(count)]
    folder = shared_batches.prepare()
    times = dict(new=0.0, reused=0.0, read=0.0)
    for mode, worker in [("new", False), ("reused", True)]:
        shared_batches._state["worker"] = worker
        pickle.loads(pickle.dumps(shared_batches.SharedBatch(batches[0], folder)))  # released at once
        gc.collect()
        for batch in batches:
            start = time.perf_counter()
            data = pickle.dumps(shared_batches.SharedBatch(batch, folder))
            middle = time.perf_counter()
            pickle.loads(data)  # dropped at once: a reused file is released for the next batch
            times[mode] += (middle - start) / count * 1e3
            times["read"] += (time.perf_counter() - middle) / count / 2 * 1e3
    shared_batches._state["worker"] = False
    shared_batches.remove_files_of(folder, [os.getpid()])
    return times


def training_step_seconds(generator, steps=3):
    """Seconds per train_on_batch of the ResNet50 training model (random weights), batch 1."""
    import keras

    from keras_maskrcnn import losses, models

    model = models.backbone("resnet50").maskrcnn(num_classes=generator.num_classes())
    training = models.training_model(model)
    training.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-5, clipnorm=0.001),
                     loss=losses.training_losses())
    inputs, targets = generator[0]
    start = time.perf_counter()
    training.train_on_batch(inputs, targets)
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        training.train_on_batch(inputs, targets)
        times.append(time.perf_counter() - start)
    return first, float(np.median(times)), inputs["image"].shape


def main(args=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO / ".." / "shared" / "data" / "tinycoco"))
    parser.add_argument("--set", default="train2017")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-model", action="store_true", help="skip the training-step timing")
    parser.add_argument("--augmentations", default=",".join(augmentations()),
                        help="comma-separated rows to time (default all: %(default)s)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="comma-separated columns (default %(default)s)")
    args = parser.parse_args(args)
    if not os.path.isdir(args.data_dir):
        print(f"tinycoco not found at {args.data_dir}")
        return 1

    print(f"data: {os.path.normpath(args.data_dir)} {args.set}, batch size 1, resize 800/1333, "
          f"{os.cpu_count()} CPUs")
    results = {}
    rows, layouts = args.augmentations.split(","), args.layouts.split(",")
    for name, known in [(rows, augmentations()), (layouts, LAYOUTS)]:
        if set(name) - set(known):
            parser.error(f"unknown {sorted(set(name) - set(known))}: choose from {list(known)}")
    both = set(layouts) == set(LAYOUTS)
    print(f"{'augmentation':<18} {'workers':<13} " + " ".join(f"{layout + ' b/s':>12}" for layout in layouts)
          + (f" {'compact/dense':>14}" if both else ""))
    for name, kwargs in augmentations().items():
        if name not in rows:
            continue
        for label, workers, processes in [("0", 0, False), ("2 threads", 2, False), ("2 processes", 2, True)]:
            rates = {}
            for layout in layouts:
                generator_class = LAYOUTS[layout]
                generator = generator_class(args.data_dir, args.set, batch_size=1, seed=0, workers=workers,
                                            use_multiprocessing=processes, **kwargs)
                generator[0]
                rates[layout] = batches_per_second(generator, args.epochs)
                results[(name, label, layout)] = rates[layout]
            print(f"{name:<18} {label:<13} " + " ".join(f"{rate:12.2f}" for rate in rates.values())
                  + (f" {rates['compact'] / rates['dense']:14.2f}" if both else ""), flush=True)

    generator = CocoGenerator(args.data_dir, args.set, batch_size=1, seed=0)
    sizes = target_bytes(generator)
    ours, dense = sizes["ours"], sizes["dense"]
    compact_anchor, dense_anchor = sizes["compact_anchor"], sizes["dense_anchor"]
    print(f"\nbytes per batch (mean over {len(generator)} batches of 1, {generator.num_classes()} classes):")
    print(f"  mask targets + rois, this layout (M=64, 28x28): {ours / MB:10.3f} MB")
    print(f"  dense full-image masks, seed layout:             {dense / MB:10.3f} MB  ({dense / ours:.0f}x)")
    print(f"  anchor targets, compact:                         {compact_anchor / MB:10.3f} MB")
    print(f"  anchor targets, dense (earlier layout):          {dense_anchor / MB:10.3f} MB  "
          f"({dense_anchor / compact_anchor:.1f}x)")
    print(f"  image input:                                     {sizes['image'] / MB:10.3f} MB")
    before = sizes["image"] + ours + dense_anchor
    after = sizes["image"] + ours + compact_anchor
    print(f"  whole batch (image, rois, all targets): {after / MB:.1f} MB compact vs {before / MB:.1f} MB dense "
          f"({before / after:.1f}x)")

    transfer = transfer_milliseconds(generator)
    print(f"  handing a batch to the training process (shared_batches): worker writes a new file "
          f"{transfer['new']:.1f} ms, writes into a reused one {transfer['reused']:.1f} ms; "
          f"the training process maps it {transfer['read']:.1f} ms")

    if args.no_model:
        print("\ntraining step: skipped (--no-model)")
        return 0
    if ("full", "0", "compact") not in results:
        print("\ntraining step: skipped (the full / compact row was not timed)")
        return 0
    try:
        first, step, shape = training_step_seconds(generator)
    except Exception as error:  # the model is developed separately; report and carry on
        print(f"\ntraining step: not measured ({type(error).__name__}: {error})")
        return 0
    loading = 1.0 / results[("full", "0", "compact")]
    print(f"\ntraining step, ResNet50 training model, batch 1, input {tuple(shape)}: "
          f"{step:.2f} s (first call with tracing {first:.1f} s)")
    print(f"loading one batch (full augmentation, workers 0): {loading:.3f} s -> step / loading = "
          f"{step / loading:.1f}x (goal >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
