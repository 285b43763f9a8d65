"""Test audio: the real speech sample (jfk.flac, 24-bit stereo 44.1 kHz) at 16 kHz, and
generated signals."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np


def _jfk() -> Path:
    """jfk.flac: $EDGEPORT_JFK, else ../shared/data beside the repository (the project's
    layout), else the workplace's /work/shared/data."""
    candidates = [Path(os.environ["EDGEPORT_JFK"])] if os.environ.get("EDGEPORT_JFK") else []
    candidates += [Path(__file__).resolve().parents[3] / "shared" / "data" / "jfk.flac",
                   Path("/work/shared/data/jfk.flac")]
    return next((path for path in candidates if path.is_file()), candidates[0])


JFK = _jfk()


@functools.cache
def jfk_16k() -> np.ndarray:
    """jfk.flac as the runtime loads it for a 16 kHz model (mono, resampled with soxr)."""
    from runtime.audio.loading import load_audio

    return load_audio(str(JFK), 16000)


@functools.cache
def generated_signals() -> tuple[np.ndarray, ...]:
    """White noise (1.3 s), a 440 Hz tone (0.7 s), and silence (0.5 s), at 16 kHz."""
    rng = np.random.default_rng(0)
    t = np.arange(11200) / 16000
    return (0.1 * rng.standard_normal(20800).astype(np.float32),
            (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
            np.zeros(8000, np.float32))
