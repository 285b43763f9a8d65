"""A request is untrusted input: audio that would take GBs to decode or resample, a path that is
a pipe, and deeply nested CLI values are refused with an InputError before any allocation."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
import soundfile

from runtime import InputError
from runtime.audio.loading import MAX_AUDIO_SECONDS, load_audio


def test_a_file_lasting_too_long_is_refused_before_decoding(monkeypatch):
    from runtime.audio import loading as audio

    monkeypatch.setattr(audio, "MAX_AUDIO_SECONDS", 1)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(3 * 8000, np.float32), 8000, format="FLAC")
    read = []
    monkeypatch.setattr(soundfile.SoundFile, "read",
                        lambda self, *a, **k: read.append(1) or np.zeros((1, 1), np.float32))
    with pytest.raises(InputError, match="hours, over the limit"):
        load_audio(buffer.getvalue(), 16000)
    assert read == []


@pytest.mark.parametrize("rate", [0.5, 1e-300, 5e6])
def test_an_absurd_sampling_rate_is_refused(rate):
    with pytest.raises(InputError):
        load_audio({"raw": np.zeros(8000, np.float32), "sampling_rate": rate}, 16000)


def test_an_array_lasting_too_long_at_its_rate_is_refused():
    long = np.zeros(MAX_AUDIO_SECONDS + 1, np.float32)  # at 1 Hz: 4 hours and a second
    with pytest.raises(InputError, match="over the limit"):
        load_audio({"raw": long, "sampling_rate": 1}, 16000)


def test_a_pipe_as_an_audio_path_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "audio.wav"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(InputError, match="not a regular file"):
        load_audio(str(fifo), 16000)
    assert time.monotonic() - started < 30


def test_a_deeply_nested_set_value_is_one_error_line(tiny_bundle, capsys):
    from runtime.cli import main

    bundle = tiny_bundle("bert", "text-classification")
    code = main(["run", str(bundle), "hello", "--set", "top_k=" + "[" * 100_000])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "bug" not in err and "Traceback" not in err
