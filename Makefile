# paperlab: `make demo` and `make test` are all a fresh clone needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned here (not in pyproject) to the build this workplace has on disk; override as
#   make install TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
# Projects that take part in `make demo` / `make bench`, in order.
DEMOS := maskcon cgh dferclip stylegan2 stylemask hyperreenact  # the two that need face-world files last
BENCHES := maskcon generator stylegan2 cgh hyperreenact stylemask dferclip ops

export OMP_NUM_THREADS ?= 2
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: help install test test-full test-gpu test-browser lint demo bench app \
        $(addprefix demo-,$(DEMOS)) $(addprefix bench-,$(BENCHES)) \
        reproduce-maskcon reproduce-dferclip reproduce-cgh reproduce-stylemask reproduce-hyperreenact

help: ## List the targets
	@echo "paperlab: five computer-vision papers on PyTorch Lightning"
	@grep -E '^[a-zA-Z0-9_%-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-24s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install paperlab editable with the dev extra

test: $(VENV)/.installed ## Fast test suite (what CI runs)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-full: $(VENV)/.installed ## All CPU tests, including those marked slow
	$(PY) -m pytest -q -m 'not gpu' $(PYTEST_ARGS)

test-gpu: $(VENV)/.installed ## Tests that need a CUDA device (kernels against references)
	$(PY) -m pytest -q -m 'gpu or cuda_build' $(PYTEST_ARGS)

# PAPERLAB_APP_SCREENSHOTS=docs/app make test-browser refreshes the README's screenshots
test-browser: $(VENV)/.installed ## The web app in headless Chromium (part of make test; needs apt-get install chromium)
	$(PY) -m pytest -q -m browser tests/projects/app $(PYTEST_ARGS)

APP_ARGS ?=
app: $(VENV)/.installed ## The web app on 127.0.0.1 (Gradio): APP_ARGS="--ckpt stylemask=last.ckpt --port 7860"
	@$(PY) -c "import gradio" 2>/dev/null || $(PY) -m pip install -e '.[app]'
	$(PY) -m projects.app.main $(APP_ARGS)

lint: $(VENV)/.installed ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: $(addprefix demo-,$(DEMOS)) ## Every project's demo, offline on CPU

bench: $(addprefix bench-,$(BENCHES)) ## Every benchmark in benchmarks/

demo-maskcon: $(VENV)/.installed ## MaskCon vs its baselines on the bundled digits (~10 min CPU)
	$(PY) -m projects.maskcon.demo

bench-maskcon: $(VENV)/.installed ## MaskCon training step img/s, memory, FLOP/s: ResNet-18 32 px b128 K=8192 (GPU when present)
	$(PY) benchmarks/maskcon.py

bench-generator: $(VENV)/.installed ## StyleGAN2 generator img/s, memory, FLOP/s (CPU 256 px; 1024 px on a GPU)
	$(PY) benchmarks/generator.py

bench-ops: $(VENV)/.installed ## cuda_ops: upsample2d/downsample2d/bias_act ref vs straightforward (CPU), kernels GB/s (GPU); OPS_ARGS=--small
	$(PY) benchmarks/ops.py $(OPS_ARGS)

# DATASET (cifartoy_good, cifartoy_bad, cifar100, imagenet32, sop_split1, sop_split2, cars196, csv), METHOD
# (maskcon, selfcon, supcon, grafit, coins), DATA_ROOT (default data), DEVICES (GPUs, DDP when > 1)
MASKCON_DATASET = $(if $(filter command line,$(origin DATASET)),$(DATASET),cifartoy_good)
reproduce-maskcon: $(VENV)/.installed ## Train+test one MaskCon paper config: make reproduce-maskcon DATASET=cifar100 METHOD=maskcon
	$(PY) -m projects.maskcon.reproduce --dataset $(MASKCON_DATASET) --method $(or $(METHOD),maskcon) \
		$(if $(DATA_ROOT),--data_root $(DATA_ROOT)) --devices $(or $(DEVICES),1)

demo-cgh: $(VENV)/.installed ## CGH vs ReSSL vs random-init encoder vs raw pixels on procedural shapes (shapes_many), kNN + linear probe, kNN curve image (CPU, ~12 min on 2 cores)
	$(PY) -m projects.cgh.demo

bench-cgh: $(VENV)/.installed ## CGH/ReSSL pretraining step: R18 32px b256, R50 224px b32 (GPU when present)
	$(PY) benchmarks/cgh.py

# DATASET / DATA_ROOT given on the command line; otherwise cifar10 in data/cifar10
CGH_DATASET = $(if $(filter command line,$(origin DATASET)),$(DATASET),cifar10)
CGH_ROOT = $(if $(filter command line,$(origin DATA_ROOT)),$(DATA_ROOT),data/$(CGH_DATASET))
reproduce-cgh: $(VENV)/.installed ## CGH+ReSSL pretrain, kNN, linear probe: make reproduce-cgh DATASET=cifar10 DATA_ROOT=data/cifar10
	$(PY) -m projects.cgh.reproduce --dataset $(CGH_DATASET) --root $(CGH_ROOT)

demo-stylegan2: $(VENV)/.installed ## StyleGAN2: shipped face-world generator's samples, truncation sweep, style mixing; a few fine-tuning steps
	$(PY) -m projects.stylegan2.demo

bench-stylegan2: $(VENV)/.installed ## StyleGAN2 training iteration (D, G, R1, path length) 256 px cm1 b4 CPU: ours vs rosinality's CPU ops
	$(PY) benchmarks/stylegan2_train.py

demo-hyperreenact: $(VENV)/.installed ## HyperReenact in the face world: shipped model fine-tuned, scored, grids + driving video
	$(PY) -m projects.hyperreenact.demo

bench-hyperreenact: $(VENV)/.installed ## HyperReenact reenacted frames/s at 256 px, random full-size weights (GPU when present)
	$(PY) benchmarks/hyperreenact.py

reproduce-hyperreenact: $(VENV)/.installed ## Released weights on VoxCeleb1 test frames vs the paper (lists what is missing)
	$(PY) -m projects.hyperreenact.reproduce

.PHONY: faceworld-benchmark
FACEWORLD_BENCHMARK_ARGS ?=
faceworld-benchmark: $(VENV)/.installed ## StyleMask and HyperReenact on held-out face-world identities, side by side
	$(PY) benchmarks/faceworld_reenactment.py --run $(FACEWORLD_BENCHMARK_ARGS)

demo-stylemask: $(VENV)/.installed ## StyleMask in the face world: shipped masks fine-tuned, scored vs the exact answer, grids + driving video
	$(PY) -m projects.stylemask.demo

bench-stylemask: $(VENV)/.installed ## StyleMask training steps/s, batched vs per-image face analysis (CPU, 32 and 256 px)
	$(PY) benchmarks/stylemask.py

STYLEMASK_ARGS ?=
reproduce-stylemask: $(VENV)/.installed ## Released mask network: official synthetic validation [+ STYLEMASK_ARGS="--voxceleb DIR"]
	$(PY) -m projects.stylemask.reproduce $(STYLEMASK_ARGS)

demo-dferclip: $(VENV)/.installed ## DFER-CLIP fit+test on procedural face clips in DFEW's layout, tiny RANDOM CLIP (~5 min CPU)
	OMP_NUM_THREADS=1 $(PY) -m projects.dferclip.demo

bench-dferclip: $(VENV)/.installed ## DFER-CLIP train step clips/s, memory, FLOP/s: ViT-B/32 16x224 px (CPU b2; GPU fp32/bf16)
	$(PY) benchmarks/dferclip.py

# DFERCLIP_ARGS e.g. "--protocol official" or "--datasets dfew --folds 1"
DFERCLIP_ARGS ?=
reproduce-dferclip: $(VENV)/.installed ## DFEW 5 folds, FERV39k, MAFW 5 folds vs the paper (lists what is missing)
	$(PY) -m projects.dferclip.reproduce $(DFERCLIP_ARGS)
