"""Landmarks of real clips, detected once per test session (MediaPipe runs for real)."""

from __future__ import annotations

import numpy as np
import pytest

from nerfconf.capture.video import probe, read_frames
from nerfconf.face.enroll import fit_from_landmarks
from nerfconf.face.extract import detect_all

from ..conftest import shared_data

CNN2_FRAMES = 400
CNN2_TRAIN = 300


@pytest.fixture(scope="session")
def cnn2_landmarks():
    path = shared_data("cnn2_25fps.mp4")
    landmarks, times = detect_all(read_frames(path, stop=CNN2_FRAMES))
    return path, landmarks, times


@pytest.fixture(scope="session")
def cnn2_model(cnn2_landmarks):
    path, landmarks, times = cnn2_landmarks
    info = probe(path)
    model, params = fit_from_landmarks(landmarks[:CNN2_TRAIN], times[:CNN2_TRAIN], (info.width, info.height))
    return model


def finite_rows(a: np.ndarray) -> np.ndarray:
    return np.all(np.isfinite(a.reshape(len(a), -1)), axis=1)
