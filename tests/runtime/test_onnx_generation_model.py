"""OnnxGenerationModel against the PyTorch model: a greedy loop written here, step by step, the
logits of every step compared with transformers' on the same sequences (full forward, no
cache); expand (repeat rows, reorder them) against fresh runs on the selected rows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from runtime import Bundle, InputError, ManifestError
from runtime.generation.model import GenerationModel
from runtime.generation.onnx_model import OnnxGenerationModel

CASES = {"gpt2": "text-generation", "bart": "text2text-generation", "t5": "text2text-generation",
         "pegasus": "summarization"}
# Prompts of different lengths, so the batch is padded (left for GPT-2, right for the sources).
TEXTS = ["The quick brown fox", "A man is eating a piece of bread, and the cat sits outside."]
STEPS = 6
ATOL = 1e-4


class Reference:
    """The tiny checkpoint in transformers, and the same model through the bundle."""

    def __init__(self, model_type, tiny_checkpoint, tiny_bundle):
        import transformers

        task = CASES[model_type]
        checkpoint = tiny_checkpoint(model_type, task)
        self.onnx = OnnxGenerationModel.from_bundle(Bundle.load(tiny_bundle(model_type, task)))
        self.encoder_decoder = model_type != "gpt2"
        auto = (transformers.AutoModelForSeq2SeqLM if self.encoder_decoder
                else transformers.AutoModelForCausalLM)
        self.torch = auto.from_pretrained(checkpoint).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            checkpoint, padding_side="right" if self.encoder_decoder else "left")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token  # as the text-generation pipeline does
        batch = tokenizer(TEXTS, padding=True, return_tensors="np")
        self.input_ids, self.attention_mask = batch["input_ids"], batch["attention_mask"]
        assert (self.attention_mask == 0).any()  # padded, as the tests mean

    def start(self, rows=None) -> np.ndarray:
        """What the search starts from: the prompts, or the decoder start token."""
        rows = np.arange(len(self.input_ids)) if rows is None else np.asarray(rows)
        if not self.encoder_decoder:
            return self.input_ids[rows]
        start = self.torch.config.decoder_start_token_id
        return np.full((len(rows), 1), start, dtype=np.int64)

    def logits(self, sequences: np.ndarray, rows) -> np.ndarray:
        """transformers' logits of the next position after ``sequences`` (source rows
        ``rows``), from a full forward without cache."""
        import torch

        mask = self.attention_mask[rows]
        with torch.no_grad():
            if self.encoder_decoder:
                out = self.torch(input_ids=torch.from_numpy(self.input_ids[rows]),
                                 attention_mask=torch.from_numpy(mask),
                                 decoder_input_ids=torch.from_numpy(sequences))
            else:
                grown = np.concatenate(
                    [mask, np.ones((len(mask), sequences.shape[1] - mask.shape[1]), np.int64)],
                    axis=1)
                positions = np.cumsum(grown, -1) - 1  # as GPT-2's prepare_inputs_for_generation
                positions[grown == 0] = 1
                out = self.torch(input_ids=torch.from_numpy(sequences),
                                 attention_mask=torch.from_numpy(grown),
                                 position_ids=torch.from_numpy(positions))
        return out.logits[:, -1].numpy()


@pytest.fixture(scope="module", params=sorted(CASES))
def reference(request, tiny_checkpoint, tiny_bundle):
    return Reference(request.param, tiny_checkpoint, tiny_bundle)


class Recording:
    """An engine that records the shapes of the feeds it runs (and the cache flag)."""

    def __init__(self, engine):
        self.engine, self.inputs, self.outputs = engine, engine.inputs, engine.outputs
        self.feeds = []

    def run(self, feed):
        self.feeds.append({k: (v.tolist() if k == "use_cache_branch" else v.shape)
                           for k, v in feed.items()})
        return self.engine.run(feed)


def _check(got: np.ndarray, expected: np.ndarray):
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_greedy_steps_match_pytorch_logits(reference):
    decoder = Recording(reference.onnx.decoder)
    model = OnnxGenerationModel(decoder, reference.onnx.encoder)
    assert isinstance(model, GenerationModel)
    assert model.is_encoder_decoder == reference.encoder_decoder
    assert model.vocab_size == reference.torch.config.vocab_size
    rows = np.arange(len(TEXTS))
    state = model.begin(reference.input_ids, reference.attention_mask)
    sequences = reference.start()
    for _ in range(STEPS):
        logits, state = model.next_logits(state, sequences)
        _check(logits, reference.logits(sequences, rows))
        sequences = np.concatenate([sequences, logits.argmax(-1)[:, None]], axis=1)
    assert state.length == sequences.shape[1] - 1  # the cache holds all but the newest token

    # The first step feeds the whole start with an empty cache, later ones the new token only.
    start = reference.start().shape[1]
    past = "past_key_values.0.decoder.key" if model.is_encoder_decoder else (
        "past_key_values.0.key")
    assert [f["input_ids"][1] for f in decoder.feeds] == [start] + [1] * (STEPS - 1)
    assert [f[past][2] for f in decoder.feeds] == [0, *range(start, start + STEPS - 1)]
    if model.is_encoder_decoder:
        assert [f["use_cache_branch"] for f in decoder.feeds] == [[False]] + [[True]] * (
            STEPS - 1)
    else:
        assert [f["attention_mask"][1] for f in decoder.feeds] == list(
            range(start, start + STEPS))


def test_expand_repeats_and_reorders_rows_like_fresh_runs(reference):
    model = reference.onnx
    state = model.begin(reference.input_ids, reference.attention_mask)
    rows = np.array([0, 0, 1, 1])  # two beams per input, as beam search expands
    state = model.expand(state, rows)
    sequences = reference.start(rows)
    logits, state = model.next_logits(state, sequences)
    fresh = model.begin(reference.input_ids[rows], reference.attention_mask[rows])
    np.testing.assert_allclose(logits, model.next_logits(fresh, sequences)[0], atol=1e-6)
    _check(logits, reference.logits(sequences, rows))

    # the two best tokens of each row: the beams of one input now differ
    best = np.argsort(-logits, axis=-1)[:, :2]
    sequences = np.concatenate([sequences, best[np.arange(4), np.arange(4) % 2][:, None]], axis=1)
    before = state
    logits, state = model.next_logits(state, sequences)
    again, _ = model.next_logits(before, sequences)  # states are never changed in place
    np.testing.assert_array_equal(logits, again)

    order = np.array([3, 0, 2])  # beam search keeps some rows, drops others, repeats none here
    state, sequences = model.expand(state, order), sequences[order]
    sequences = np.concatenate([sequences, logits[order].argmax(-1)[:, None]], axis=1)
    for _ in range(2):
        logits, state = model.next_logits(state, sequences)
        source_rows = rows[order]
        fresh = model.begin(reference.input_ids[source_rows],
                            reference.attention_mask[source_rows])
        np.testing.assert_allclose(logits, model.next_logits(fresh, sequences)[0], atol=1e-5)
        _check(logits, reference.logits(sequences, source_rows))
        sequences = np.concatenate([sequences, logits.argmax(-1)[:, None]], axis=1)


def test_misuse_of_the_state_is_a_clear_error(reference):
    model = reference.onnx
    state = model.begin(reference.input_ids, reference.attention_mask)
    sequences = reference.start()
    _, state = model.next_logits(state, sequences)
    with pytest.raises(InputError, match="cache already holds"):
        model.next_logits(state, sequences)
    with pytest.raises(InputError, match="holds 2 rows"):
        model.next_logits(state, sequences[:1])


def test_an_encoder_feed_begins_as_token_ids_do(reference):
    """The encoder is fed by the names it declares: a text prompt given as a feed (as
    Whisper's input_features are) is the same state; a feed missing an input is refused."""
    model = reference.onnx
    if not model.is_encoder_decoder:
        with pytest.raises(InputError, match="not a feed"):
            model.begin({"input_ids": reference.input_ids}, None)
        return
    feed = {"input_ids": reference.input_ids, "attention_mask": reference.attention_mask}
    sequences = reference.start()
    expected, _ = model.next_logits(model.begin(reference.input_ids, reference.attention_mask),
                                    sequences)
    np.testing.assert_array_equal(model.next_logits(model.begin(feed, None), sequences)[0],
                                  expected)
    with pytest.raises(InputError, match="the feed lacks"):
        model.begin({"input_values": reference.input_ids}, None)


def _edited_copy(bundle_dir, tmp_path, edit):
    copy = shutil.copytree(bundle_dir, tmp_path / "bundle")
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest, copy)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return Bundle.load(copy)


def test_a_bundle_missing_a_graph_is_a_clear_error(tiny_bundle, tmp_path):
    def drop_decoder(manifest, path):
        del manifest["graphs"]["decoder_model_merged"]
        del manifest["variants"]["fp32"]["files"]["decoder_model_merged"]
        del manifest["checksums"]["onnx/decoder_model_merged.onnx"]
        (path / "onnx" / "decoder_model_merged.onnx").unlink()

    bundle = _edited_copy(tiny_bundle("t5", "text2text-generation"), tmp_path, drop_decoder)
    with pytest.raises(ManifestError, match=r"no graph 'decoder_model_merged'.*export"):
        OnnxGenerationModel.from_bundle(bundle)


def test_a_bundle_that_does_not_generate_is_refused(tiny_bundle, tmp_path):
    def encoder_family(manifest, path):
        manifest["family"] = "text-encoder"

    bundle = _edited_copy(tiny_bundle("gpt2", "text-generation"), tmp_path, encoder_family)
    with pytest.raises(InputError, match="'text-encoder' model, which does not generate"):
        OnnxGenerationModel.from_bundle(bundle)


@pytest.mark.parametrize(("model_type", "task"), [("gpt2", "text-generation"),
                                                  ("bart", "text2text-generation")])
def test_io_binding_keeps_the_cache_as_ortvalues_and_changes_nothing(model_type, task,
                                                                     tiny_bundle):
    """With io_binding the present.* outputs stay OrtValues (on the GPU they stay on the
    device) and are bound as the next past; greedy and beam search give the same tokens."""
    import onnxruntime as ort

    from runtime import Bundle
    from runtime.generation import OnnxGenerationModel
    from runtime.generation.search import generate

    bundle = Bundle.load(tiny_bundle(model_type, task))
    plain = OnnxGenerationModel.from_bundle(bundle)
    bound = OnnxGenerationModel.from_bundle(bundle, io_binding=True)
    assert not plain.io_binding and bound.io_binding
    ids = np.array([[5, 9, 14, 3], [0, 0, 7, 22]], dtype=np.int64)
    if model_type == "bart":
        ids[1, :2] = [7, 22]
    mask = np.ones_like(ids)
    if model_type == "gpt2":
        mask[1, :2] = 0
    state = bound.begin(ids, mask)
    start = ids if model_type == "gpt2" else np.full((2, 1), 2, dtype=np.int64)
    _, state = bound.next_logits(state, start)
    assert all(isinstance(v, ort.OrtValue) for v in state.past.values())
    if model_type == "bart":  # read by every step: kept where the session runs too
        assert isinstance(state.encoder["encoder_hidden_states"], ort.OrtValue)
    for search in ({"num_beams": 1}, {"num_beams": 3, "num_return_sequences": 2}):
        options = dict(max_length=12, decoder_start_token_id=2, **search)
        assert np.array_equal(generate(plain, ids, mask, **options).sequences,
                              generate(bound, ids, mask, **options).sequences)


@pytest.mark.parametrize(("model_type", "task"), [("gpt2", "text-generation"),
                                                  ("bart", "summarization"),
                                                  ("whisper", "automatic-speech-recognition")])
def test_io_binding_gives_the_same_logits_and_caches_through_beam_reorders(model_type, task,
                                                                          tiny_bundle):
    from fake_tensorrt import beam_steps

    from runtime import Bundle
    from runtime.generation import OnnxGenerationModel

    bundle = Bundle.load(tiny_bundle(model_type, task))
    beam_steps(bundle, OnnxGenerationModel.from_bundle(bundle, io_binding=True),
               OnnxGenerationModel.from_bundle(bundle))


def test_a_reorder_within_each_input_shares_the_encoder_side_arrays(tiny_bundle):
    """Rows of one input hold the same encoder states and cross-attention cache: a beam search
    reorder (every row stays on its input) shares them; a reorder across inputs copies."""
    from runtime import Bundle
    from runtime.generation import OnnxGenerationModel

    model = OnnxGenerationModel.from_bundle(Bundle.load(tiny_bundle("bart", "summarization")))
    ids = np.array([[5, 9, 14, 3], [7, 22, 8, 4]])
    state = model.expand(model.begin(ids, np.ones_like(ids)), [0, 0, 1, 1])
    _, state = model.next_logits(state, np.full((4, 1), 2))
    cross = [name for name in state.past if ".encoder." in name]
    assert cross and state.inputs.tolist() == [0, 0, 1, 1]
    within = model.expand(state, [1, 0, 3, 2])
    assert within.inputs.tolist() == [0, 0, 1, 1]
    assert all(within.past[name] is state.past[name] for name in cross)
    assert within.encoder["encoder_hidden_states"] is state.encoder["encoder_hidden_states"]
    assert not any(within.past[name] is state.past[name] for name in state.past
                   if name not in cross)  # the decoder's own cache follows the beams
    across = model.expand(state, [2, 0, 3, 1])
    assert across.inputs.tolist() == [1, 0, 1, 0]
    for name in cross:
        np.testing.assert_array_equal(across.past[name], state.past[name][[2, 0, 3, 1]])


def test_phi3_with_rope_scaling_recomputes_its_cache_once_past_the_original_length():
    from runtime.generation.onnx_model import recompute_length

    phi3 = {"model_type": "phi3", "original_max_position_embeddings": 4096,
            "rope_scaling": {"type": "longrope"}}
    assert recompute_length(phi3) == 4096
    assert recompute_length({**phi3, "rope_scaling": None}) is None
    assert recompute_length({**phi3, "model_type": "llama"}) is None
    for bad in (True, -1, 0, "4096", 1.5):
        assert recompute_length({**phi3, "original_max_position_embeddings": bad}) is None
