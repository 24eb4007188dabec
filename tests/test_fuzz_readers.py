"""Property tests (Hypothesis) of every reader of user files: random and mutated inputs give a
result or one of the project's documented errors (a ValueError naming the file, or
UnreadableImageError for pictures), never another exception.

Seeded (derandomize=True, no example database) and bounded (FUZZ_EXAMPLES inputs per reader), so
every run tries the same inputs. Run with `-s` to see, after the module, the inputs tried per reader
and the outcomes by type.
"""

import collections
import io
import json
import os
import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from keras_maskrcnn.utils import image as image_module
from keras_maskrcnn.utils.image import UnreadableImageError

FUZZ_EXAMPLES = int(os.environ.get("KERAS_MASKRCNN_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=list(HealthCheck))

OUTCOMES = collections.defaultdict(collections.Counter)
"""{reader: Counter({"ok": n, "ValueError": n, ...})} over the whole module."""


@pytest.fixture(scope="module", autouse=True)
def report_outcomes():
    yield
    print("\nfuzzed readers: inputs tried and outcomes")
    for reader, counts in sorted(OUTCOMES.items()):
        total = sum(counts.values())
        print(f"  {reader:<28} {total:>5}  " + ", ".join(f"{kind} {n}" for kind, n in counts.most_common()))


def attempt(reader, path, call):
    """Runs call(); counts its outcome under `reader`. A documented error must name the file (its
    base name is enough: messages may give the path as the user typed it); anything else fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except UnreadableImageError as error:
        OUTCOMES[reader]["UnreadableImageError"] += 1
        assert os.path.basename(path) in str(error) or "image file" in str(error), str(error)
    except ValueError as error:
        OUTCOMES[reader][type(error).__name__] += 1
        assert os.path.basename(str(path).rstrip("/")) in str(error), f"{type(error).__name__}: {error}"
    else:
        OUTCOMES[reader]["ok"] += 1


@pytest.fixture(autouse=True)
def small_pixel_limit():
    """Mutated headers may claim big pictures: keep decoding them cheap, and exercise the limit."""
    previous = image_module.set_max_image_pixels(200_000)
    yield
    image_module.set_max_image_pixels(previous)


# --- shared pieces -------------------------------------------------------------------------------------

def mutations(data, max_edits=6):
    """Strategy: `data` with a few bytes changed, inserted or removed, or cut short."""
    data = bytes(data)

    @st.composite
    def mutate(draw):
        result = bytearray(data)
        for _ in range(draw(st.integers(0, max_edits))):
            kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut"]))
            if not result:
                break
            at = draw(st.integers(0, len(result) - 1))
            if kind == "flip":
                result[at] ^= 1 << draw(st.integers(0, 7))
            elif kind == "set":
                result[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
            elif kind == "insert":
                result[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif kind == "delete":
                del result[at:at + draw(st.integers(1, 8))]
            else:
                del result[at:]
        return bytes(result)

    return mutate()


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.text(max_size=12),
                         st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, -1, 10, 64, 1e308]))
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=5), st.dictionaries(st.text(max_size=8), children, max_size=5)), max_leaves=20)


def dump(value):
    """JSON text of `value` (NaN and Infinity as Python's json writes them)."""
    return json.dumps(value, allow_nan=True)


# --- pictures -----------------------------------------------------------------------------------------

def _picture_files():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    files = {}
    for name, picture, options in [("png", rgb, {}), ("jpg", rgb, {}), ("gif", rgb.convert("P"), {}),
                                   ("bmp", rgb, {}), ("tif", rgb, {}), ("webp", rgb, {}),
                                   ("I16.png", Image.fromarray(rng.integers(0, 65536, (12, 16), dtype=np.uint16)), {}),
                                   ("LA.tif", rgb.convert("LA"), {})]:
        buffer = io.BytesIO()
        picture.save(buffer, format={"jpg": "JPEG", "tif": "TIFF", "I16.png": "PNG", "LA.tif": "TIFF"}.get(
            name, name.upper()), **options)
        files[name] = buffer.getvalue()
    return files


PICTURES = _picture_files()


@FUZZ
@given(kind=st.sampled_from(sorted(PICTURES)), data=st.data())
def test_picture_headers_and_pixels(tmp_path_factory, kind, data):
    content = data.draw(mutations(PICTURES[kind], max_edits=4))
    folder = tmp_path_factory.getbasetemp() / "fuzz_pictures"
    folder.mkdir(exist_ok=True)
    path = str(folder / f"picture.{kind.split('.')[-1]}")
    with open(path, "wb") as handle:
        handle.write(content)
    reader = data.draw(st.sampled_from(["read_image_bgr", "image_size", "read_mask", "read_image_bgr(orient)"]))

    def call():
        if reader == "read_image_bgr":
            image = image_module.read_image_bgr(path)
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        elif reader == "read_image_bgr(orient)":
            image_module.read_image_bgr(path, orient=True)
        elif reader == "image_size":
            width, height = image_module.image_size(path)
            assert width * height <= 200_000
        else:
            mask = image_module.read_mask(path)
            assert mask.dtype == np.uint8 and mask.ndim == 2 and set(np.unique(mask)) <= {0, 1}

    attempt(f"pictures: {reader}", path, call)


# --- CSV annotations and classes ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def csv_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_csv")
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(folder / "images" / "a.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(folder / "masks" / "a0.png")
    Image.fromarray(mask[:20]).save(folder / "masks" / "small.png")
    (folder / "masks" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (folder / "classes.csv").write_text("cat,0\ndog,1\n")
    return folder


csv_fields = st.one_of(
    st.sampled_from(["images/a.png", "images/missing.png", "masks/a0.png", "masks/small.png", "masks/broken.png",
                     "cat", "dog", "bird", "", "0", "1", "10", "20", "30", "64", "48", "-1", "nan", "inf", "1e999",
                     "5.5", " 3 ", '"', "a,b"]),
    st.integers(-10, 100).map(str), st.text(max_size=6))


@st.composite
def csv_texts(draw):
    if draw(st.booleans()):
        rows = draw(st.lists(st.lists(csv_fields, min_size=0, max_size=9), max_size=6))
        buffer = io.StringIO()
        import csv

        writer = csv.writer(buffer)
        for row in rows:
            if draw(st.booleans()):
                writer.writerow(row)
            else:
                buffer.write(",".join(row) + "\n")  # unquoted: stray quotes, too many columns
        return buffer.getvalue().encode("utf-8")
    good = b"images/a.png,10,10,30,20,cat,masks/a0.png\nimages/a.png,0,0,63,47,dog,masks/a0.png\n"
    return draw(st.one_of(mutations(good), st.binary(max_size=80)))


@FUZZ
@given(content=csv_texts())
def test_csv_annotations(csv_folder, content):
    from keras_maskrcnn.preprocessing.csv_generator import CSVGenerator

    path = csv_folder / "annotations.csv"
    path.write_bytes(content)
    attempt("CSV annotations", str(path), lambda: CSVGenerator(str(path), str(csv_folder / "classes.csv")))


@FUZZ
@given(content=st.one_of(mutations(b"cat,0\ndog,1\n"), st.binary(max_size=40),
                         st.lists(st.lists(csv_fields, max_size=3), max_size=4).map(
                             lambda rows: "\n".join(",".join(r) for r in rows).encode())))
def test_csv_classes(csv_folder, content):
    from keras_maskrcnn.preprocessing.csv_generator import read_classes

    path = csv_folder / "fuzz_classes.csv"
    path.write_bytes(content)
    attempt("CSV classes", str(path), lambda: read_classes(str(path)))


# --- COCO JSON ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_coco")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(folder / "a.png")
    return folder


def _coco_base():
    return {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 10], "area": 200,
                             "iscrowd": 0, "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]]}],
            "categories": [{"id": 3, "name": "cat"}]}


coco_field_values = st.one_of(json_values, st.sampled_from(
    [[], [[]], [[1, 2, 3, 4]], [[10, 10, 30, 10, 30, 20]], [[10, 10, 30, 10, 30]], {"size": [48, 64], "counts": "0"},
     {"size": [48, 64], "counts": [0, 3072]}, {"size": [10, 10], "counts": [100]}, {"counts": "x"}, [0, 0, 1e9, 1e9],
     [1, 2, 3], -1, 0, 99, "1", 1.5]))


@st.composite
def coco_texts(draw):
    way = draw(st.sampled_from(["fields", "fields", "fields", "bytes", "json"]))
    if way == "bytes":
        return draw(mutations(dump(_coco_base()).encode(), max_edits=4))
    if way == "json":
        return dump(draw(json_values)).encode()
    data = _coco_base()
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(["images", "annotations", "categories", "top"]))
        if section == "top":
            data[draw(st.sampled_from(["images", "annotations", "categories"]))] = draw(coco_field_values)
            continue
        if not isinstance(data.get(section), list) or not data[section]:
            continue
        item = data[section][0]
        if not isinstance(item, dict):
            continue
        if draw(st.booleans()):
            data[section].append(dict(item))
            item = data[section][-1]
        keys = {"images": ["id", "file_name", "width", "height"],
                "annotations": ["id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation"],
                "categories": ["id", "name", "supercategory"]}[section]
        key = draw(st.sampled_from(keys))
        if draw(st.integers(0, 5)) == 0:
            item.pop(key, None)
        else:
            item[key] = draw(coco_field_values)
    return dump(data).encode()


@FUZZ
@given(content=coco_texts(), skip=st.booleans())
def test_coco_json(coco_folder, content, skip):
    from keras_maskrcnn.preprocessing.coco import CocoGenerator

    path = coco_folder / "instances_fuzz.json"
    path.write_bytes(content)
    attempt("COCO JSON", str(path), lambda: CocoGenerator(annotations=str(path), images=str(coco_folder),
                                                          skip_bad_annotations=skip))


# --- anchor .ini ---------------------------------------------------------------------------------------

ini_values = st.one_of(st.sampled_from(["32 64 128 256 512", "8 16 32 64 128", "0.5 1 2", "1 1.2 1.6", "", "0", "-1",
                                        "nan", "inf", "1e999", "%", "%(x)s", "1,2,3", "a b", "0 0 0 0 0"]),
                       st.lists(st.sampled_from(["0", "1", "2", "-3", "0.5", "1e3", "x", "nan"]), max_size=6).map(" ".join),
                       st.text(max_size=10))


@st.composite
def ini_texts(draw):
    way = draw(st.sampled_from(["fields", "fields", "bytes", "text"]))
    good = ("[anchor_parameters]\nsizes = 32 64 128 256 512\nstrides = 8 16 32 64 128\nratios = 0.5 1 2\n"
            "scales = 1 1.2 1.6\n")
    if way == "bytes":
        return draw(mutations(good.encode()))
    if way == "text":
        return draw(st.text(max_size=60)).encode("utf-8", "surrogatepass")
    keys = ["sizes", "strides", "ratios", "scales"]
    lines = ["[anchor_parameters]"]
    for key in keys:
        if draw(st.integers(0, 6)):
            lines.append(f"{key} = {draw(ini_values)}")
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(["[anchor_parameters]", "sizes = 1", "[other]", "x", "= 3"])))
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@FUZZ
@given(content=ini_texts())
def test_anchor_ini(tmp_path_factory, content):
    from keras_maskrcnn.utils.config import anchor_parameters_from_file

    folder = tmp_path_factory.getbasetemp() / "fuzz_ini"
    folder.mkdir(exist_ok=True)
    path = folder / "anchors.ini"
    path.write_bytes(content)
    attempt("anchor .ini", str(path), lambda: anchor_parameters_from_file(str(path)))


# --- export metadata JSON ------------------------------------------------------------------------------

@FUZZ
@given(content=st.one_of(st.binary(max_size=40), json_values.map(lambda v: dump(v).encode()),
                         mutations(b'{"backbone": "resnet50", "classes": ["cat"], "image_min_side": 800}')))
def test_export_metadata_json(tmp_path_factory, content):
    from keras_maskrcnn.runtimes import metadata_path, read_export_metadata

    folder = tmp_path_factory.getbasetemp() / "fuzz_export"
    folder.mkdir(exist_ok=True)
    artifact = str(folder / "model.onnx")
    with open(metadata_path(artifact), "wb") as handle:
        handle.write(content)

    def call():
        assert isinstance(read_export_metadata(artifact), dict)

    attempt("export metadata JSON", metadata_path(artifact), call)


# --- YOLO labels and labelme files ---------------------------------------------------------------------

yolo_tokens = st.one_of(st.sampled_from(["0", "1", "2", "0.1", "0.5", "0.9", "1.5", "-0.1", "nan", "inf", "x", "1e999",
                                         "3.0", "0x1"]), st.text(max_size=4))


@FUZZ
@given(content=st.one_of(
    st.lists(st.lists(yolo_tokens, max_size=9).map(" ".join), max_size=5).map(lambda rows: "\n".join(rows).encode()),
    mutations(b"0 0.1 0.1 0.5 0.1 0.5 0.5\n1 0.2 0.2 0.8 0.2 0.5 0.9\n"), st.binary(max_size=30)))
def test_yolo_label_files(tmp_path_factory, content):
    from keras_maskrcnn.preprocessing.yolo import read_label_file

    folder = tmp_path_factory.getbasetemp() / "fuzz_yolo"
    folder.mkdir(exist_ok=True)
    path = folder / "a.txt"
    path.write_bytes(content)
    attempt("YOLO label file", str(path), lambda: read_label_file(str(path), 2))


@pytest.fixture(scope="module")
def labelme_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_labelme")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(folder / "a.png")
    return folder


def _labelme_base():
    return {"version": "5.4.1", "flags": {}, "imagePath": "a.png", "imageData": None, "imageHeight": 48,
            "imageWidth": 64, "shapes": [{"label": "cat", "points": [[10, 10], [30, 10], [30, 20]], "group_id": None,
                                          "shape_type": "polygon", "flags": {}}]}


@st.composite
def labelme_texts(draw):
    way = draw(st.sampled_from(["fields", "fields", "fields", "bytes", "json"]))
    if way == "bytes":
        return draw(mutations(dump(_labelme_base()).encode(), max_edits=4))
    if way == "json":
        return dump(draw(json_values)).encode()
    data = _labelme_base()
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            data[draw(st.sampled_from(["imagePath", "imageData", "imageHeight", "imageWidth", "shapes"]))] = draw(
                st.one_of(json_values, st.sampled_from(["a.png", "missing.png", "", "aGVsbG8=", 48, 64, []])))
        elif isinstance(data.get("shapes"), list) and data["shapes"] and isinstance(data["shapes"][0], dict):
            shape = data["shapes"][0]
            shape[draw(st.sampled_from(["label", "points", "shape_type", "group_id", "mask"]))] = draw(
                st.one_of(json_values, st.sampled_from(
                    ["polygon", "rectangle", "circle", "mask", "line", "point", "linestrip", "__ignore__", "dog",
                     [[1, 1]], [[1, 1], [2, 2]], [[0, 0], [1e9, 1e9], [5, 5]], [["a", "b"]], [[1, 2, 3]]])))
    return dump(data).encode()


@FUZZ
@given(content=labelme_texts())
def test_labelme_files(labelme_folder, content):
    from keras_maskrcnn.preprocessing.labelme import LabelmeGenerator

    path = labelme_folder / "a.json"
    path.write_bytes(content)
    # errors name the file, or the folder for what concerns them all ("no labelled regions")
    attempt("labelme JSON", str(labelme_folder), lambda: LabelmeGenerator(str(labelme_folder)))


@FUZZ
@given(content=st.one_of(json_values.map(lambda v: __import__("yaml").safe_dump(v).encode()),
                         mutations(b"path: .\ntrain: images\nval: images\nnames:\n  0: cat\n  1: dog\n"),
                         st.binary(max_size=40)))
def test_yolo_data_yaml(tmp_path_factory, content):
    from keras_maskrcnn.preprocessing.yolo import read_data_yaml

    folder = tmp_path_factory.getbasetemp() / "fuzz_yolo_yaml"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    path = folder / "data.yaml"
    path.write_bytes(content)
    attempt("YOLO data.yaml", str(path), lambda: read_data_yaml(str(path)))


# --- model files: .keras archives and old .h5 files -----------------------------------------------------

def _keras_archive():
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", dump({"keras_version": "3.10.0"}))
        archive.writestr("config.json", dump({"class_name": "Functional", "config": {"layers": []}}))
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(200))
        archive.writestr("keras_maskrcnn.json", dump({"epoch": 2, "backbone": "vgg16"}))
    return buffer.getvalue()


KERAS_ARCHIVE = _keras_archive()


@FUZZ
@given(content=st.one_of(mutations(KERAS_ARCHIVE, max_edits=5), st.binary(max_size=64)))
def test_keras_model_archives(tmp_path_factory, content):
    """check_model_file and read_metadata (what every tool calls first) on mutated .keras archives."""
    from keras_maskrcnn.models.saving import check_model_file, read_metadata

    folder = tmp_path_factory.getbasetemp() / "fuzz_keras"
    folder.mkdir(exist_ok=True)
    path = folder / "model.keras"
    path.write_bytes(content)

    def call():
        if check_model_file(str(path)) == "keras":
            assert isinstance(read_metadata(str(path)), dict)

    attempt(".keras archive", str(path), call)


def _old_h5():
    """A small HDF5 file laid out as a Keras 2 model file (attributes and a model_weights group)."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = dump({"class_name": "Model", "config": {"name": "retinanet", "layers": []}}).encode()
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = [b"conv1"]
        layer = weights.create_group("conv1")
        layer.attrs["weight_names"] = [b"conv1/kernel:0"]
        layer.create_dataset("conv1/kernel:0", data=np.zeros((3, 3, 3, 4), np.float32))
    return buffer.getvalue()


@settings(FUZZ, max_examples=max(10, FUZZ_EXAMPLES // 2))
@given(content=mutations(_old_h5(), max_edits=3))
def test_old_h5_model_files(tmp_path_factory, content):
    """The old-.h5 reader (keras-maskrcnn 0.2, keras-retinanet 1.0) on mutated HDF5 files."""
    from keras_maskrcnn.models.saving import read_metadata

    folder = tmp_path_factory.getbasetemp() / "fuzz_h5"
    folder.mkdir(exist_ok=True)
    path = folder / "model.h5"
    path.write_bytes(content)
    attempt("old .h5 file", str(path), lambda: read_metadata(str(path)))


def test_report_shape():
    """The module's own sanity: the mutations strategy changes bytes and keeps within bounds."""
    assert struct.calcsize("<I") == 4
