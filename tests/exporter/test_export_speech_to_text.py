"""Export Speech2Text (encoder + merged decoder with past) validated against PyTorch at two batch
sizes and two feature lengths, padded rows masked, with and without the KV cache; the feature
frames named audio_frames where the graphs read them (the decoder reads the features' mask);
its slow sentencepiece tokenizer converted to tokenizer.json; and the conversion's refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from speech_to_text_checkpoints import TINY_SPEECH_TO_TEXT

from exporter import bundle_from_checkpoint
from exporter.architectures import ARCHITECTURES, infer_task
from exporter.validate import BATCH_SIZES, DECODER_LENGTHS, FEATURE_FRAMES
from runtime import Bundle, ExportError
from runtime.backends.engine import OrtEngine
from runtime.dims import DIM_NAMES

ASR = "automatic-speech-recognition"
((MODEL_TYPE, _),) = TINY_SPEECH_TO_TEXT


def _dims(graph: dict, side: str) -> dict[str, list]:
    return {spec["name"]: spec["dims"] for spec in graph[side]}


def test_export_validates_against_pytorch(tiny_checkpoint, tiny_bundle):
    bundle = Bundle.load(tiny_bundle(MODEL_TYPE, ASR))
    checkpoint = tiny_checkpoint(MODEL_TYPE, ASR)
    row = ARCHITECTURES[MODEL_TYPE]
    config = json.loads((checkpoint / "config.json").read_text())
    assert infer_task(config) == ASR
    assert (bundle.task, bundle.model_type, bundle.manifest["family"],
            bundle.manifest["modality"]) == (ASR, MODEL_TYPE, "encoder-decoder", "audio")
    assert list(bundle.graphs) == ["encoder_model", "decoder_model_merged"]

    report = json.loads((bundle.path / "reports" / "validation.json").read_text())
    assert report["passed"] and max(report["max_abs_diff"].values()) <= row.atol
    encoder = [c for c in report["cases"] if c["graph"] == "encoder_model"]
    assert sorted((c["batch"], c["audio_frames"]) for c in encoder) == sorted(
        (b, n) for b in BATCH_SIZES for n in FEATURE_FRAMES)
    decoder = [c for c in report["cases"] if c["graph"] == "decoder_model_merged"]
    assert {(c["step"], c["audio_frames"], c["decoder_sequence"]) for c in decoder} == {
        *(("first", n, d) for n, d in zip(FEATURE_FRAMES, DECODER_LENGTHS)),
        *(("with past", n, 1) for n in FEATURE_FRAMES)}
    assert {"logits", "present.0.decoder.key", "present.1.encoder.value"} <= set(
        report["max_abs_diff"])

    encoder_dims = _dims(bundle.graphs["encoder_model"], "inputs")
    assert encoder_dims == {"input_features": ["batch", "audio_frames", 80],
                            "attention_mask": ["batch", "audio_frames"]}
    decoder_dims = _dims(bundle.graphs["decoder_model_merged"], "inputs")
    assert decoder_dims["encoder_attention_mask"] == ["batch", "audio_frames"]
    assert decoder_dims["encoder_hidden_states"] == ["batch", "encoder_sequence", 32]
    for graph in bundle.graphs.values():
        for spec in graph["inputs"]:
            assert all(isinstance(d, int) or d in DIM_NAMES for d in spec["dims"]), spec

    # TensorRT's default profile: 30 s of frames, the encoder's 6000 positions for the decoder
    from runtime.backends.tensorrt.profiles import default_ranges

    ranges = default_ranges(bundle)
    assert ranges["audio_frames"] == (1, 3000, 3000)
    assert ranges["encoder_sequence"] == (1, 128, 6000)

    assert bundle.manifest["preprocessing"]["tokenizer"] == "tokenizer.json"
    assert json.loads((bundle.path / "preprocessor_config.json").read_text()) == json.loads(
        (checkpoint / "preprocessor_config.json").read_text())
    tokenizer_config = json.loads((bundle.path / "tokenizer_config.json").read_text())
    assert tokenizer_config["do_upper_case"] is True


def test_the_decoder_reads_the_features_mask(tiny_checkpoint, tiny_bundle):
    """optimum names the decoder's encoder_attention_mask as long as the encoder's output, but
    the graph takes the features' mask and shortens it itself (as the model does): with it the
    logits are PyTorch's, with a mask of the encoder's length they are not."""
    import torch
    import transformers

    bundle = tiny_bundle(MODEL_TYPE, ASR)
    encoder = OrtEngine(bundle / "onnx" / "encoder_model.onnx")
    decoder = OrtEngine(bundle / "onnx" / "decoder_model_merged.onnx")
    model = transformers.AutoModelForSpeechSeq2Seq.from_pretrained(
        tiny_checkpoint(MODEL_TYPE, ASR)).eval()
    rng = np.random.default_rng(0)
    features = rng.standard_normal((1, 160, 80)).astype(np.float32)
    features[:, 120:] = 0.0
    mask = (np.arange(160) < 120).astype(np.int64)[None]
    hidden = encoder.run({"input_features": features, "attention_mask": mask})[
        "last_hidden_state"]
    assert hidden.shape[1] == 40

    def logits(encoder_mask):
        feed = {"input_ids": np.array([[2, 17]]), "encoder_hidden_states": hidden,
                "encoder_attention_mask": encoder_mask, "use_cache_branch": np.array([False])}
        for spec in decoder.inputs:
            if spec.name.startswith("past_key_values."):
                feed[spec.name] = np.zeros((1, spec.dims[1], 0, spec.dims[3]), np.float32)
        return decoder.run(feed)["logits"]

    with torch.no_grad():
        expected = model(input_features=torch.from_numpy(features),
                         attention_mask=torch.from_numpy(mask),
                         decoder_input_ids=torch.tensor([[2, 17]])).logits.numpy()
    np.testing.assert_allclose(logits(mask), expected, atol=1e-4)
    shortened = (np.arange(40) < 30).astype(np.int64)[None]
    assert np.abs(logits(shortened) - expected).max() > 1e-2


def test_a_tokenizer_that_cannot_be_converted_exactly_is_refused(tiny_checkpoint, tmp_path):
    checkpoint = shutil.copytree(tiny_checkpoint(MODEL_TYPE, ASR), tmp_path / "checkpoint")
    vocab = json.loads((checkpoint / "vocab.json").read_text())
    piece = next(p for p in vocab if p.startswith("▁") and len(p) > 2)
    renamed = {("renamed" if p == piece else p): i for p, i in vocab.items()}
    (checkpoint / "vocab.json").write_text(json.dumps(renamed))
    with pytest.raises(ExportError, match="lacks 1 pieces"):
        bundle_from_checkpoint(checkpoint, tmp_path / "bundle")
    vocab[piece] = len(vocab) + 5  # ids with a gap
    (checkpoint / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ExportError, match="not 0 to"):
        bundle_from_checkpoint(checkpoint, tmp_path / "bundle")
    (checkpoint / "sentencepiece.bpe.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(ExportError, match="tokenizer"):
        bundle_from_checkpoint(checkpoint, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
