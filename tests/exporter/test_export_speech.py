"""Export Wav2Vec2, HuBERT (speech recognition with CTC, audio classification) and Whisper
(encoder + merged decoder with past), each validated against PyTorch: the speech encoders at two
batch sizes and two waveform lengths, Whisper's graphs at two batch sizes and two decoder
lengths, with and without the KV cache."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from speech_checkpoints import TINY_SPEECH

from exporter import bundle_from_checkpoint
from exporter.architectures import ARCHITECTURES, infer_task
from exporter.validate import AUDIO_LENGTHS, DECODER_LENGTHS
from runtime import Bundle, ExportError
from runtime.backends.engine import OrtEngine
from runtime.dims import DIM_NAMES

ASR, CLASSIFICATION = "automatic-speech-recognition", "audio-classification"


def _dims(graph: dict, side: str) -> dict[str, list]:
    return {spec["name"]: spec["dims"] for spec in graph[side]}


@pytest.mark.parametrize(("model_type", "task"), sorted(TINY_SPEECH))
def test_export_validates_against_pytorch(model_type, task, tiny_checkpoint, tiny_bundle):
    bundle = Bundle.load(tiny_bundle(model_type, task))
    checkpoint = tiny_checkpoint(model_type, task)
    row = ARCHITECTURES[model_type]
    assert (bundle.task, bundle.model_type, bundle.manifest["family"],
            bundle.manifest["modality"]) == (task, model_type, row.family, "audio")
    assert list(bundle.graphs) == list(row.graphs)
    assert sorted(p.name for p in (bundle.path / "onnx").iterdir()) == sorted(
        f"{g}.onnx" for g in row.graphs)

    report = json.loads((bundle.path / "reports" / "validation.json").read_text())
    assert report["passed"] and bundle.manifest["validation"]["passed"]
    outputs = {o["name"] for g in bundle.graphs.values() for o in g["outputs"]}
    assert set(report["max_abs_diff"]) == outputs
    assert max(report["max_abs_diff"].values()) <= row.atol
    for graph in bundle.graphs.values():
        for spec in graph["inputs"]:  # every input dim named in the vocabulary, or fixed
            assert all(isinstance(d, int) or d in DIM_NAMES for d in spec["dims"]), spec

    extractor = json.loads((checkpoint / "preprocessor_config.json").read_text())
    assert json.loads((bundle.path / "preprocessor_config.json").read_text()) == extractor
    preprocessing = bundle.manifest["preprocessing"]
    assert preprocessing["feature_extractor"] == "preprocessor_config.json"
    if row.family == "audio-encoder":
        _check_speech_encoder(bundle, report, task, extractor)
    else:
        _check_whisper(bundle, report, checkpoint)


def _check_speech_encoder(bundle, report, task, extractor):
    assert {c["batch"] for c in report["cases"]} == {1, 3}
    assert {c["audio_samples"] for c in report["cases"]} == set(AUDIO_LENGTHS)
    inputs, outputs = (_dims(bundle.graphs["model"], side) for side in ("inputs", "outputs"))
    # the graph takes a mask exactly where the feature extractor makes one (transformers then
    # feeds it to the model; a group-norm model is fed none)
    expected = {"input_values": ["batch", "audio_samples"]}
    if extractor.get("return_attention_mask"):
        expected["attention_mask"] = ["batch", "audio_samples"]
    assert inputs == expected
    if task == ASR:
        assert outputs == {"logits": ["batch", "audio_frames", bundle.config["vocab_size"]]}
        assert bundle.manifest["preprocessing"]["tokenizer"] == "vocab.json"
        vocab = json.loads((bundle.path / "vocab.json").read_text())
        assert vocab["<pad>"] == 0 and vocab["|"] == 4
        config = json.loads((bundle.path / "tokenizer_config.json").read_text())
        assert config["word_delimiter_token"] == "|"
        assert (bundle.path / "special_tokens_map.json").is_file()
    else:
        assert outputs == {"logits": ["batch", len(bundle.config["id2label"])]}
        assert "tokenizer" not in bundle.manifest["preprocessing"]


def _check_whisper(bundle, report, checkpoint):
    config = bundle.config
    steps = {"first": "decoder_sequence", "with past": "past_sequence"}
    for step, axis in steps.items():
        cases = [c for c in report["cases"] if c.get("step") == step]
        assert {c["batch"] for c in cases} == {1, 3}
        assert {c[axis] for c in cases} == set(DECODER_LENGTHS)
    assert {c["batch"] for c in report["cases"] if c["graph"] == "encoder_model"} == {1, 3}

    # 30 s windows: the features and the encoder's positions are static
    encoder = bundle.graphs["encoder_model"]
    assert _dims(encoder, "inputs") == {"input_features": ["batch", config["num_mel_bins"], 3000]}
    assert _dims(encoder, "outputs") == {
        "last_hidden_state": ["batch", config["max_source_positions"], config["d_model"]]}
    inputs = _dims(bundle.graphs["decoder_model_merged"], "inputs")
    assert inputs["input_ids"] == ["batch", "decoder_sequence"]
    assert inputs["encoder_hidden_states"] == ["batch", config["max_source_positions"],
                                               config["d_model"]]
    assert inputs["use_cache_branch"] == [1]
    assert "encoder_attention_mask" not in inputs
    assert inputs["past_key_values.0.decoder.key"][::2] == ["batch", "past_sequence"]
    assert inputs["past_key_values.1.encoder.value"][::2] == ["batch", "encoder_sequence"]
    logits = _dims(bundle.graphs["decoder_model_merged"], "outputs")["logits"]
    assert logits == ["batch", "decoder_sequence", config["vocab_size"]]

    assert bundle.manifest["preprocessing"]["tokenizer"] == "tokenizer.json"
    tokenizer = json.loads((bundle.path / "tokenizer.json").read_text())
    added = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    assert added["<|notimestamps|>"] + 1 == added["<|0.00|>"]
    assert added["<|30.00|>"] == config["vocab_size"] - 1
    generation = json.loads((checkpoint / "generation_config.json").read_text())
    assert json.loads((bundle.path / "generation_config.json").read_text()) == generation
    assert generation["no_timestamps_token_id"] == added["<|notimestamps|>"]


def test_the_mask_makes_padding_invisible(tiny_bundle):
    """How the runtime feeds a batch to a graph that takes attention_mask: zero-padded
    waveforms with the mask at 0 over the padding give each row the frames it has alone."""
    bundle = Bundle.load(tiny_bundle("hubert", ASR))
    engine = OrtEngine(bundle.path / "onnx" / "model.onnx")
    rng = np.random.default_rng(0)
    long, short = (rng.standard_normal(n).astype(np.float32) for n in (20800, 12345))
    alone = engine.run({"input_values": short[None],
                        "attention_mask": np.ones((1, len(short)), dtype=np.int64)})["logits"]
    values = np.zeros((2, len(long)), dtype=np.float32)
    mask = np.zeros((2, len(long)), dtype=np.int64)
    for row, wave in enumerate((long, short)):
        values[row, :len(wave)], mask[row, :len(wave)] = wave, 1
    batched = engine.run({"input_values": values, "attention_mask": mask})["logits"]
    frames = alone.shape[1]  # the CTC frames of the short row: 320 samples each
    assert frames == (len(short) - 80) // 320
    np.testing.assert_allclose(batched[1, :frames], alone[0], atol=1e-4)


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert"])
def test_the_weight_norm_is_folded_into_the_weight(model_type, tiny_checkpoint, tiny_bundle):
    """The positional convolution's weight is g * v / ||v|| in PyTorch (weight_norm); the graph
    holds its value, not the computation (an fp16 variant would recompute it in fp16)."""
    import onnx
    import torch
    import transformers

    path = Bundle.load(tiny_bundle(model_type, ASR)).graph_path("model", "fp32")
    graph = onnx.load(str(path)).graph
    assert not [n.name for n in graph.node if n.op_type == "ReduceL2"]
    conv = next(n for n in graph.node if n.op_type == "Conv" and "pos_conv" in n.name)
    weights = {t.name: t for t in graph.initializer}
    folded = onnx.numpy_helper.to_array(weights[conv.input[1]])
    model = transformers.AutoModelForCTC.from_pretrained(tiny_checkpoint(model_type, ASR))
    with torch.no_grad():
        expected = model.base_model.encoder.pos_conv_embed.conv.weight.numpy()
    assert model.base_model.encoder.pos_conv_embed.conv.parametrizations  # still in PyTorch
    np.testing.assert_allclose(folded, expected, rtol=1e-6, atol=1e-7)


def test_audio_tasks_are_inferred():
    assert infer_task({"model_type": "wav2vec2", "architectures": ["Wav2Vec2ForCTC"]}) == ASR
    assert infer_task({"model_type": "wav2vec2", "architectures": [
        "Wav2Vec2ForSequenceClassification"]}) == CLASSIFICATION
    assert infer_task({"model_type": "hubert", "architectures": ["HubertForCTC"]}) == ASR
    assert infer_task({"model_type": "whisper", "architectures": [
        "WhisperForConditionalGeneration"]}) == ASR


def test_a_checkpoint_without_feature_extractor_is_refused(tiny_checkpoint, tmp_path):
    checkpoint = shutil.copytree(tiny_checkpoint("wav2vec2", ASR), tmp_path / "c")
    (checkpoint / "preprocessor_config.json").unlink()
    with pytest.raises(ExportError, match="no preprocessor_config.json, so edgeport cannot "
                                          "know how to prepare audio"):
        bundle_from_checkpoint(checkpoint, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_a_ctc_checkpoint_without_its_vocabulary_is_refused(tiny_checkpoint, tmp_path):
    checkpoint = shutil.copytree(tiny_checkpoint("wav2vec2", ASR), tmp_path / "c")
    (checkpoint / "vocab.json").unlink()
    with pytest.raises(ExportError, match="Could not load the CTC tokenizer"):
        bundle_from_checkpoint(checkpoint, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
