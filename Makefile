# rankcast: `make demo` runs the main job, `make test` the test suite. Both set everything up first.
PYTHON ?= python3
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

.PHONY: demo test test-quick lint bench-codec mosquitto aarch64 clean

demo: $(VENV)/.ready mosquitto
	$(VENV)/bin/rankcast demo --out demo-out

test: $(VENV)/.ready $(DEVICE_VENV)/.ready $(AARCH64)/.ready mosquitto
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest
	RANKCAST_DEVICE_ENV=1 $(DEVICE_VENV)/bin/python -m pytest $(DEVICE_TESTS)
	$(AARCH64)/bin/python-tflite -m pytest -p no:cacheprovider $(AARCH64_TESTS)
	$(AARCH64)/bin/python-litert -m pytest -p no:cacheprovider $(AARCH64_TESTS)

# The loop while you work: every test not marked slow, in the server environment (about a minute).
test-quick: $(VENV)/.ready mosquitto
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -m "not slow"

lint: $(VENV)/.ready
	$(VENV)/bin/ruff check .

bench-codec: $(VENV)/.ready
	$(VENV)/bin/rankcast bench codec

# aarch64 Pythons under qemu-user with NumPy 1.x + tflite-runtime and NumPy 2.x + ai-edge-litert (.ci/aarch64-env).
aarch64: $(AARCH64)/.ready
$(AARCH64)/.ready: .ci/aarch64-env pyproject.toml $(VENV)/.ready
	PIP=$(VENV)/bin/pip .ci/aarch64-env $(AARCH64)
	touch $@

# The server/simulator environment: torch (CPU), matplotlib, scikit-learn, test tools.
$(VENV)/.ready: pyproject.toml
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet $(TORCH)
	$(VENV)/bin/pip install --quiet -e '.[sim,dev]' '$(TORCH)'
	touch $@

# What a Raspberry Pi-class device has: the device extra and tflite-runtime with NumPy 1.x, no torch.
$(DEVICE_VENV)/.ready: pyproject.toml
	[ -x $(DEVICE_VENV)/bin/python ] || $(PYTHON) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/pip install --quiet -e '.[device,tflite,dev]'
	touch $@

# Mosquitto for the broker; gcc for the test that loads a library built with -ffast-math.
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y mosquitto mosquitto-clients)
	@command -v gcc >/dev/null 2>&1 || ($(SUDO) apt-get update && $(SUDO) apt-get install -y gcc libc6-dev)

clean:
	rm -rf $(VENV) $(DEVICE_VENV) $(AARCH64) demo-out .pytest_cache .hypothesis
