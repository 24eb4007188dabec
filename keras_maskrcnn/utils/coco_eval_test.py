"""Tests of the COCO evaluation (pycocotools bbox and segm)."""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from keras_maskrcnn.utils.coco_eval import COCO_STAT_NAMES, _results_for, evaluate_coco, run_coco_eval
from keras_maskrcnn.utils.eval_test import EmptyModel, GroundTruthModel, StubGenerator, shape_scenes

TINYCOCO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tinycoco"


def _ground_truth_results(coco):
    """Every non-crowd annotation of a COCO data set as a detection with score 1 (RLE masks)."""
    results = []
    for annotation in coco.loadAnns(coco.getAnnIds(iscrowd=False)):
        rle = coco.annToRLE(annotation)
        counts = rle["counts"]
        results.append({
            "image_id": annotation["image_id"],
            "category_id": annotation["category_id"],
            "score": 1.0,
            "bbox": list(annotation["bbox"]),
            "segmentation": {"size": rle["size"],
                             "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts},
        })
    return results


@pytest.mark.parametrize("split", ["val2017", "train2017"])
def test_ground_truth_as_detections_scores_one_on_tinycoco(split):
    annotations = TINYCOCO / "annotations" / f"instances_{split}.json"
    if not annotations.is_file():
        pytest.skip(f"{annotations} is not available")
    coco = COCO(str(annotations))
    results = _ground_truth_results(coco)
    # the results survive a JSON round trip, as written by evaluate_coco
    results = json.loads(json.dumps(results))
    stats = run_coco_eval(coco, results, coco.getImgIds(), verbose=False)
    assert len(stats["segm"]) == len(stats["bbox"]) == 12
    assert stats["segm"][0] == pytest.approx(1.0)
    assert stats["segm"][1] == pytest.approx(1.0)
    assert stats["bbox"][0] == pytest.approx(1.0)


class StubCocoGenerator(StubGenerator):
    """StubGenerator with the COCO generator's extras, over a COCO JSON written to a directory.

    Labels 0 (square) and 1 (circle) map to COCO category ids 3 and 7.
    """

    coco_labels = {0: 3, 1: 7}

    def __init__(self, scenes, directory):
        super().__init__(scenes)
        self.set_name = "stub2017"
        self.image_ids = [101 + index for index in range(len(scenes))]
        images, annotations = [], []
        for index, (image, gt) in enumerate(scenes):
            images.append({"id": self.image_ids[index], "file_name": f"{index}.png",
                           "height": image.shape[0], "width": image.shape[1]})
            for mask, label in zip(gt["masks"], gt["labels"]):
                rle = mask_utils.encode(np.asfortranarray(mask))
                x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
                annotations.append({
                    "id": len(annotations) + 1, "image_id": self.image_ids[index],
                    "category_id": self.coco_labels[int(label)], "iscrowd": 0,
                    "area": float(mask_utils.area(rle)), "bbox": [x, y, w, h],
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                })
        categories = [{"id": 3, "name": "square"}, {"id": 7, "name": "circle"},
                      {"id": 9, "name": "unused"}]
        path = os.path.join(directory, "instances_stub2017.json")
        with open(path, "w") as handle:
            json.dump({"images": images, "annotations": annotations, "categories": categories}, handle)
        self.coco = COCO(path)

    def label_to_coco_label(self, label):
        return self.coco_labels[label]

    def coco_label_to_label(self, coco_label):
        return {v: k for k, v in self.coco_labels.items()}[coco_label]


def test_evaluate_coco_with_ground_truth_model(tmp_path, monkeypatch):
    generator = StubCocoGenerator(shape_scenes(), str(tmp_path))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    save_path = tmp_path / "results"
    stats = evaluate_coco(generator, GroundTruthModel(generator), save_path=str(save_path))
    assert os.listdir(work) == []
    assert set(stats) == {"bbox", "segm"}
    assert len(stats["segm"]) == len(COCO_STAT_NAMES) == 12
    # boxes come back exactly; masks go through 28x28 and back, so segm is exact at IoU 0.5
    # and close to 1 over 0.5:0.95
    assert stats["bbox"][0] == pytest.approx(1.0)
    assert stats["segm"][1] == pytest.approx(1.0)
    assert stats["segm"][0] > 0.95

    with open(save_path / "stub2017_segm_results.json") as handle:
        results = json.load(handle)
    assert len(results) == 7
    first = results[0]
    assert first["image_id"] == 101 and first["category_id"] in (3, 7)
    assert isinstance(first["segmentation"]["counts"], str)
    assert first["segmentation"]["size"] == [60, 80]
    np.testing.assert_allclose(first["bbox"], [5, 6, 25, 22], atol=1e-3)
    decoded = mask_utils.decode(first["segmentation"])
    assert decoded.shape == (60, 80) and decoded.sum() > 0


def test_evaluate_coco_writes_to_a_json_file_path(tmp_path):
    generator = StubCocoGenerator(shape_scenes(), str(tmp_path))
    target = tmp_path / "out" / "detections.json"
    evaluate_coco(generator, GroundTruthModel(generator), save_path=str(target))
    assert len(json.loads(target.read_text())) == 7


def test_evaluate_coco_without_detections_warns_and_returns_zeros(tmp_path):
    generator = StubCocoGenerator(shape_scenes(), str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = evaluate_coco(generator, EmptyModel(2), save_path=str(tmp_path / "empty"))
    assert stats == {"bbox": [0.0] * 12, "segm": [0.0] * 12}
    assert any("no detections" in str(w.message) for w in caught)
    assert json.loads((tmp_path / "empty" / "stub2017_segm_results.json").read_text()) == []


def test_results_per_iou_type_keep_only_their_field():
    # loadRes takes a detection's area from its box when one is present; segm must use the mask
    results = [{"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [0, 0, 4, 4],
                "segmentation": {"size": [8, 8], "counts": "0"}}]
    segm = _results_for(results, "segm")
    bbox = _results_for(results, "bbox")
    assert "bbox" not in segm[0] and "segmentation" in segm[0]
    assert "segmentation" not in bbox[0] and bbox[0]["bbox"] == [0, 0, 4, 4]
    assert set(results[0]) == {"image_id", "category_id", "score", "bbox", "segmentation"}


def test_evaluate_coco_with_coco_generator_on_tinycoco(tmp_path):
    if not (TINYCOCO / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"{TINYCOCO} is not available")
    from keras_maskrcnn.preprocessing.coco import CocoGenerator

    generator = CocoGenerator(str(TINYCOCO), "val2017", image_min_side=240, image_max_side=400)
    stats = evaluate_coco(generator, GroundTruthModel(generator), save_path=str(tmp_path))
    # boxes are exact; masks are resampled through 28x28 and pasted back
    assert stats["bbox"][0] == pytest.approx(1.0)
    assert stats["segm"][1] > 0.95
    results = json.loads((tmp_path / "val2017_segm_results.json").read_text())
    assert {r["image_id"] for r in results} <= set(generator.image_ids)
