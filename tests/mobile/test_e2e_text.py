"""End-to-end graphs of text bundles (mobile.e2e_text): the tokenizer, the model and the
postprocessing in one graph that plain onnxruntime runs with the extensions' library, giving
what the torch-free pipeline gives on the same bundle (scores within 1e-4, embeddings at cosine
>= 0.9999), one text at a time or in a batch, and converting to ORT format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

onnxruntime = pytest.importorskip("onnxruntime")
extensions = pytest.importorskip("onnxruntime_extensions")

from runtime import pipeline  # noqa: E402
from runtime.bundle import Bundle  # noqa: E402
from runtime.errors import InputError  # noqa: E402

TEXTS = [
    "Hello world, héllo!",
    "a",
    "",
    "  ",
    "Zoë and François flew from São Paulo to 東京 — naïve café-goers 😀 (unbelievably)",
    "word " * 700,  # longer than any model here: truncated
]


def _session(path):
    options = onnxruntime.SessionOptions()
    options.register_custom_ops_library(extensions.get_library_path())
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _e2e(bundle_path, tmp_path, name="model_e2e.onnx"):
    from mobile.e2e import build_e2e

    target = tmp_path / name
    record = build_e2e(Bundle.load(bundle_path), "fp32", target)
    return target, record


def _run(session, texts):
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"text": np.array(texts, dtype=object)})))


def _metadata(path):
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.fixture(scope="module")
def bpe_bundle(tmp_path_factory):
    """bpe_bundle(model_type) -> a text-classification bundle of a tiny RoBERTa (byte-level
    BPE) or XLM-RoBERTa (Unigram) with its own kind of tokenizer."""
    from mobile_checkpoints import build_tiny_bpe_checkpoint

    from exporter import bundle_from_checkpoint

    cache = {}

    def make(model_type):
        if model_type not in cache:
            root = tmp_path_factory.mktemp(f"bpe-{model_type}")
            checkpoint = build_tiny_bpe_checkpoint(model_type, "text-classification",
                                                   root / "checkpoint")
            cache[model_type] = bundle_from_checkpoint(checkpoint, root / "bundle",
                                                       task="text-classification")
        return cache[model_type]

    return make


def _check_classification(bundle_path, tmp_path):
    target, record = _e2e(bundle_path, tmp_path)
    assert record["exact"] and set(record["outputs"]) == {"scores"}
    labels = json.loads(_metadata(target)["labels"])
    session = _session(target)
    classify = pipeline("text-classification", model=bundle_path)
    expected = []
    for text in TEXTS:
        result = {r["label"]: r["score"] for r in classify(text, top_k=None, truncation=True)}
        expected.append([result[label] for label in labels])
    expected = np.array(expected)
    batch = _run(session, TEXTS)["scores"]
    assert batch.shape == expected.shape
    np.testing.assert_allclose(batch, expected, atol=1e-4, rtol=0)
    for i, text in enumerate(TEXTS):  # one at a time: the same
        np.testing.assert_allclose(_run(session, [text])["scores"][0], expected[i], atol=1e-4,
                                   rtol=0)
    return target


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])  # distilbert: no token_type_ids
def test_text_classification_matches_the_pipeline(tiny_bundle, model_type, tmp_path):
    _check_classification(tiny_bundle(model_type, "text-classification"), tmp_path)


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta"])
def test_bpe_and_unigram_tokenizers_match_the_pipeline(bpe_bundle, model_type, tmp_path):
    _check_classification(bpe_bundle(model_type), tmp_path)


def test_sentence_embeddings_match_the_pipeline(minilm_bundle, tmp_path):
    """The real all-MiniLM-L6-v2: mean pooling and normalization inside the graph, texts cut
    at its max_seq_length (256)."""
    target, record = _e2e(minilm_bundle, tmp_path)
    assert set(record["outputs"]) == {"embeddings"}
    assert json.loads(_metadata(target)["edgeport.pooling"]) == ["mean"]
    embed = pipeline("feature-extraction", model=minilm_bundle)
    expected = np.array([embed(text) for text in TEXTS])
    got = _run(_session(target), TEXTS)["embeddings"]
    assert got.shape == expected.shape == (len(TEXTS), 384)
    cosine = (got * expected).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(
        expected, axis=-1)
    assert cosine.min() >= 0.9999, cosine
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1, atol=1e-5)


@pytest.mark.parametrize("modes,normalize", [(("cls",), False), (("max", "mean"), True),
                                             (("mean_sqrt_len", "weightedmean"), False),
                                             (("lasttoken",), True)])
def test_pooling_modes_match_the_runtime(minilm_bundle, tmp_path, modes, normalize):
    """Every pooling mode sentence-transformers has, as runtime.text.pooling computes it."""
    from runtime.text.pooling import _CONFIG_KEYS

    bundle = tmp_path / "bundle"
    shutil.copytree(minilm_bundle, bundle)
    modules = json.loads((bundle / "modules.json").read_text())
    pooling_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    config_path = bundle / pooling_dir / "config.json"
    config = json.loads(config_path.read_text())
    config.update({key: mode in modes for mode, key in _CONFIG_KEYS.items()})
    config_path.write_text(json.dumps(config))
    if not normalize:
        (bundle / "modules.json").write_text(json.dumps(
            [m for m in modules if not m["type"].endswith("Normalize")]))
    target, _ = _e2e(bundle, tmp_path)
    embed = pipeline("feature-extraction", model=bundle)
    texts = TEXTS[:3] + TEXTS[4:]
    expected = np.array([embed(text) for text in texts])
    got = _run(_session(target), texts)["embeddings"]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_token_embeddings_match_the_pipeline(tiny_bundle, tmp_path):
    bundle = tiny_bundle("bert", "feature-extraction")
    target, record = _e2e(bundle, tmp_path)
    assert set(record["outputs"]) == {"last_hidden_state", "attention_mask"}
    out = _run(_session(target), TEXTS)
    extract = pipeline("feature-extraction", model=bundle)
    for i, text in enumerate(TEXTS):
        expected = np.array(extract(text, truncation=True))[0]
        kept = out["attention_mask"][i].astype(bool)
        assert kept.sum() == len(expected)
        np.testing.assert_allclose(out["last_hidden_state"][i][kept], expected, atol=1e-4,
                                   rtol=0)


def test_token_scores_match_the_pipeline(tiny_bundle, tmp_path):
    """Each token the pipeline labels has, at its index, the score the graph gives."""
    bundle = tiny_bundle("bert", "token-classification")
    target, record = _e2e(bundle, tmp_path)
    assert not record["exact"] and record["notes"]
    labels = json.loads(_metadata(target)["labels"])
    texts = TEXTS[:5]
    out = _run(_session(target), texts)
    tag = pipeline("token-classification", model=bundle)
    checked = 0
    for i, text in enumerate(texts):
        for entity in tag(text):
            score = out["scores"][i, entity["index"], labels.index(entity["entity"])]
            assert abs(score - entity["score"]) <= 1e-4
            checked += 1
    assert checked
    np.testing.assert_allclose(out["scores"].sum(-1)[out["attention_mask"] == 1], 1, atol=1e-5)


def test_converts_to_ort_format(tiny_bundle, tmp_path):
    """ONNX Runtime's converter takes the extensions' ops with custom_op_library_path, and the
    .ort model gives the same scores."""
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    folder = tmp_path / "e2e"
    folder.mkdir()
    target, _ = _e2e(tiny_bundle("bert", "text-classification"), folder)
    convert_onnx_models_to_ort(target, output_dir=tmp_path / "ort",
                               optimization_styles=[OptimizationStyle.Fixed],
                               custom_op_library_path=Path(extensions.get_library_path()))
    ort_model = tmp_path / "ort" / "model_e2e.ort"
    config = (tmp_path / "ort" / "model_e2e.required_operators.config").read_text()
    assert "ai.onnx.contrib;1;BertTokenizer" in config
    np.testing.assert_allclose(_run(_session(ort_model), TEXTS)["scores"],
                               _run(_session(target), TEXTS)["scores"], atol=1e-6)


def test_unsupported_tokenizer_is_a_clear_error(tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("bert", "text-classification"), bundle)
    tokenizer = json.loads((bundle / "tokenizer.json").read_text())
    tokenizer["normalizer"] = {"type": "Lowercase"}
    (bundle / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(InputError, match="BertNormalizer.*Note: use model.ort"):
        _e2e(bundle, tmp_path)


def test_unsupported_task_names_the_supported_ones(tiny_bundle, tmp_path):
    with pytest.raises(InputError, match="text-classification"):
        _e2e(tiny_bundle("bert", "fill-mask"), tmp_path)


def test_question_answering_gives_the_pipelines_answer(tiny_bundle, tmp_path):
    """The logits equal the runtime's on the same encoding, and the span an app picks from
    them as the notes say is the pipeline's answer."""
    from runtime.text.tokenizer import TextTokenizer

    bundle = tiny_bundle("bert", "question-answering")
    target, record = _e2e(bundle, tmp_path)
    assert set(record["inputs"]) == {"question", "context"} and not record["exact"]
    questions = ["Where does Zoë live?", "Who?", "What is it, really?"]
    contexts = ["Zoë lives in São Paulo, near the café.", "Nobody knows.",
                "It is a tiny model (with random weights) — the answers mean nothing."]
    session = _session(target)
    feed = {"question": np.array(questions, dtype=object),
            "context": np.array(contexts, dtype=object)}
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    tokenizer = TextTokenizer.from_dir(bundle)
    answer = pipeline("question-answering", model=bundle)
    engine = Bundle.load(bundle).engine()
    for i, (question, context) in enumerate(zip(questions, contexts)):
        encoding = tokenizer.encode_batch([question], [context])[0]
        n = len(encoding.ids)
        assert out["input_ids"][i, :n].tolist() == encoding.ids
        assert out["token_type_ids"][i, :n].tolist() == encoding.type_ids
        assert out["attention_mask"][i].sum() == n
        expected = engine.run({k: v for k, v in tokenizer.pad([encoding]).items()
                               if k in {s.name for s in engine.inputs}})
        for name in ("start_logits", "end_logits"):
            np.testing.assert_allclose(out[name][i, :n], expected[name][0], atol=1e-4, rtol=0)
        # the app's step: the best span of context tokens, at most 15 long
        context_tokens = [t for t in range(n) if encoding.type_ids[t] == 1 and t < n - 1]
        start, end = out["start_logits"][i], out["end_logits"][i]
        best = max(((s, e) for s in context_tokens for e in context_tokens if s <= e < s + 15),
                   key=lambda span: start[span[0]] + end[span[1]])
        got = context[encoding.offsets[best[0]][0]:encoding.offsets[best[1]][1]]
        assert got == answer(question=question, context=context)["answer"]


@pytest.mark.parametrize("recipe", ["fp16", "dynamic-int8"])
def test_quantized_variants_match_their_pipeline(tiny_bundle, tmp_path, recipe):
    """The chosen variant's graph is the one inside (float16 scores cast to float32 first)."""
    from calibration.quantize import variant_from_bundle
    from mobile.e2e import build_e2e

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("bert", "text-classification"), bundle)
    variant = variant_from_bundle(bundle, recipe)
    target = tmp_path / "model_e2e.onnx"
    record = build_e2e(Bundle.load(bundle), variant, target)
    assert any("one scale per call" in note for note in record["notes"]) == (recipe != "fp16")
    labels = json.loads(_metadata(target)["labels"])
    classify = pipeline("text-classification", model=bundle, variant=variant)
    texts = TEXTS[:5]
    expected = [[{r["label"]: r["score"] for r in classify(text, top_k=None)}[label]
                 for label in labels] for text in texts]
    session = _session(target)
    one_by_one = [_run(session, [text])["scores"][0] for text in texts]
    np.testing.assert_allclose(one_by_one, expected, atol=1e-4, rtol=0)
    if recipe == "fp16":  # dynamic int8 scales activations per batch: one text per call
        np.testing.assert_allclose(_run(session, texts)["scores"], expected, atol=1e-4,
                                   rtol=0)
