# Two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := demo-output

.PHONY: venv test demo images docs dist bench bench-peers legacy-reference clean

$(STAMP): pyproject.toml setup.py keras_maskrcnn/__init__.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[tensorflow,test]'
	touch $(STAMP)

venv: $(STAMP)

# Two workers (pytest-xdist), one test file each at a time: compiling and tracing, much of the
# suite's time, run on one core and leave the other idle. PYTEST_FLAGS= runs it in one process.
PYTEST_FLAGS ?= -n 2 --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_FLAGS)

# Trains from random weights on synthetic shapes (no download), evaluates on held-out images,
# writes prediction pictures to demo-output/predictions/.
DEMO_TRAIN := $(DEMO_DIR)/data/train
DEMO_VAL := $(DEMO_DIR)/data/val
DEMO_EPOCHS ?= 6
DEMO_STEPS ?= 200
DEMO_SNAPSHOT = $(DEMO_DIR)/snapshots/mobilenetv2_csv_$(shell printf %02d $(DEMO_EPOCHS)).keras
DEMO_FLAGS := --backbone mobilenetv2 --image-min-side 96 --image-max-side 96 --config $(DEMO_DIR)/anchors.ini

demo: $(STAMP)
	mkdir -p $(DEMO_DIR)
	printf '[anchor_parameters]\nsizes = 16 32 64 128 256\nstrides = 8 16 32 64 128\nratios = 0.5 1 2\nscales = 1 1.26 1.59\n' > $(DEMO_DIR)/anchors.ini
	$(BIN)/maskrcnn-shapes $(DEMO_TRAIN) --images 400 --size 96 --seed 1
	$(BIN)/maskrcnn-shapes $(DEMO_VAL) --images 40 --size 96 --seed 2
	$(BIN)/maskrcnn-train $(DEMO_FLAGS) --feature-size 128 --mask-feature-size 64 --lr 1e-3 --clipnorm 1 \
		--batch-size 4 --epochs $(DEMO_EPOCHS) --steps $(DEMO_STEPS) --mask-rois 2 --max-detections 10 --seed 0 \
		--snapshot-path $(DEMO_DIR)/snapshots --tensorboard-dir '' --no-evaluation \
		csv $(DEMO_TRAIN)/annotations.csv $(DEMO_TRAIN)/classes.csv
	$(BIN)/maskrcnn-evaluate $(DEMO_FLAGS) --max-detections 10 --save-path $(DEMO_DIR)/evaluation \
		csv $(DEMO_VAL)/annotations.csv $(DEMO_VAL)/classes.csv $(DEMO_SNAPSHOT)
	$(BIN)/maskrcnn-predict $(DEMO_SNAPSHOT) $(DEMO_VAL)/images \
		--output-dir $(DEMO_DIR)/predictions
	@echo "demo pictures: $(DEMO_DIR)/predictions/"

# The documentation site (mkdocs.yml, docs/) into site/; --strict fails on broken links and references.
# The pictures of the README and the documentation (images/), from make demo's model and data
# (make demo runs first when its model is not there).
images: $(STAMP)
	test -f $(DEMO_SNAPSHOT) || $(MAKE) demo
	$(BIN)/python images/make.py

docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir site

# Release check: builds the sdist and the wheel into dist/ (from a clean copy of the source),
# runs twine check, checks the wheel's files, installs it with the tensorflow extra into a new
# virtual environment outside the checkout and runs there every console script's --help,
# maskrcnn-shapes, two training steps, maskrcnn-predict and maskrcnn-evaluate. Takes minutes.
# DIST_FLAGS=--commit=HEAD builds the last commit instead of the work tree with its changes.
DIST_FLAGS ?=

dist: $(STAMP)
	$(BIN)/python tests/dist_check.py $(DIST_FLAGS)

# The peer venv of benchmarks/compare.py: torchvision's Mask R-CNN timed side by side with ours.
# PEERS_PIP_FLAGS: extra pip options for that install (e.g. --index-url of a CPU-only wheel index).
PEERS_VENV := benchmarks/.venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
PEERS_PIP_FLAGS ?=

$(PEERS_STAMP):
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install $(PEERS_PIP_FLAGS) torch==2.14.1 torchvision==0.29.1
	$(PEERS_VENV)/bin/python -c "import torch, torchvision; print('peer venv: torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(PEERS_STAMP)

bench-peers: $(STAMP) $(PEERS_STAMP)
	@echo "peer venv ready; compare with: $(BIN)/python benchmarks/compare.py"

# The original code as reference and timing peer (benchmarks/legacy/): keras-maskrcnn 0.2.2,
# keras-retinanet 1.0.0 and keras-resnet 0.2.0 on tf-keras, patched at run time only
# (benchmarks/legacy/patches.py). The three old packages go in with --no-deps: their pins no longer install.
LEGACY_VENV := benchmarks/.venv-legacy
LEGACY_STAMP := $(LEGACY_VENV)/.installed
LEGACY_OUT ?= benchmarks/legacy-reference
LEGACY_TF ?= 2.21.*

$(LEGACY_STAMP):
	$(PYTHON) -m venv $(LEGACY_VENV)
	$(LEGACY_VENV)/bin/pip install --quiet --upgrade pip
	$(LEGACY_VENV)/bin/pip install --quiet 'tensorflow==$(LEGACY_TF)' 'tf-keras==$(LEGACY_TF)' h5py numpy opencv-python-headless pillow
	$(LEGACY_VENV)/bin/pip install --quiet --no-deps keras-retinanet==1.0.0 keras-resnet==0.2.0 keras-maskrcnn==0.2.2
	$(LEGACY_VENV)/bin/python -c "import tensorflow as tf, tf_keras; print('legacy venv: tensorflow', tf.__version__, 'tf_keras', tf_keras.__version__)"
	touch $(LEGACY_STAMP)

legacy-reference: $(LEGACY_STAMP)
	$(LEGACY_VENV)/bin/python benchmarks/legacy/reference.py --out $(LEGACY_OUT)
	@echo "legacy reference files: $(LEGACY_OUT)/"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache dist build site
