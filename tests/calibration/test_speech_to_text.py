"""Quantization and comparison on the tiny Speech2Text bundle: a dynamic-int8 variant compared
with fp32 by the word error rate of the pipeline's transcripts, and the fp32 graphs against the
checkpoint's PyTorch model generating through the same pipeline; a digital-silence recording,
whose features are not finite, is refused clearly."""

from __future__ import annotations

import shutil

import pytest
import soundfile
from audio_samples import generated_signals, jfk_16k
from speech_to_text_checkpoints import TINY_SPEECH_TO_TEXT

from calibration.compare import compare_variants
from calibration.metrics import error_rates
from calibration.quantize import variant_from_bundle
from runtime import InputError, pipeline

ASR, RATE = "automatic-speech-recognition", 16000
((MODEL_TYPE, _),) = TINY_SPEECH_TO_TEXT


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Four recordings: three pieces of jfk.flac and noise."""
    folder = tmp_path_factory.mktemp("speech") / "recordings"
    folder.mkdir()
    for index, start in enumerate((0, 3, 6)):
        soundfile.write(str(folder / f"jfk{index}.wav"),
                        jfk_16k()[start * RATE:(start + 3) * RATE], RATE)
    soundfile.write(str(folder / "noise.wav"), generated_signals()[0], RATE)
    return folder


def test_compare_by_word_error_rate_and_against_pytorch(tiny_bundle, recordings, tmp_path):
    path = shutil.copytree(tiny_bundle(MODEL_TYPE, ASR), tmp_path / "bundle")
    variant_from_bundle(path, "dynamic-int8")
    report = compare_variants(path, recordings, samples=4, layer_samples=2, new_tokens=10)
    assert report["task_metric"] == "wer" and report["data"]["samples"] == 4
    signals = [soundfile.read(str(recordings / name), dtype="float32")[0]
               for name in ("jfk0.wav", "jfk1.wav", "jfk2.wav", "noise.wav")]

    def transcripts(variant):
        transcribe = pipeline(ASR, model=path, variant=variant)
        return [transcribe(signal, num_beams=1, max_new_tokens=10)["text"]
                for signal in signals]

    expected = transcripts("fp32")
    assert sum(len(text.split()) for text in expected) >= 8
    task = report["variants"]["int8"]["task"]
    rates = error_rates(expected, transcripts("int8"))
    assert task["value"] == pytest.approx(rates["wer"])
    assert task["words"] == rates["words"]

    reference = compare_variants(path, recordings, variants=["fp32"], reference="pytorch",
                                 samples=3, layers=False, new_tokens=8)
    fp32 = reference["variants"]["fp32"]
    assert fp32["task"]["value"] == 0.0 and fp32["task"]["token_agreement"] == 1.0
    assert fp32["cosine"] > 0.99999


def test_silent_recordings_are_refused_clearly(tiny_bundle, recordings, tmp_path):
    folder = shutil.copytree(recordings, tmp_path / "recordings")
    soundfile.write(str(folder / "silence.wav"), generated_signals()[2], RATE)
    path = shutil.copytree(tiny_bundle(MODEL_TYPE, ASR), tmp_path / "bundle")
    with pytest.raises(InputError, match="digital silence"):
        variant_from_bundle(path, "static-int8", calibration=folder, samples=5)
