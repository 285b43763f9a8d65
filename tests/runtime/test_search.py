"""The runtime's search (greedy, sampling, beam search) against transformers' generate().

Both drive the same tiny PyTorch models with seeded random weights: transformers through
``model.generate``, the runtime through ``TorchGenerationModel`` (tests/support), which feeds the
model what generate() feeds it. So any difference in the generated ids is the search's.

The tiny models are made to talk: weights large enough (and output embeddings untied for BART
and T5) that greedy outputs are varied rather than one repeated token. The eos ids are tokens
that greedy search emits a few steps in, so rows and beams finish at different lengths.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import transformers
from torch_generation import TorchGenerationModel
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    T5Config,
    T5ForConditionalGeneration,
)

from runtime.errors import InputError
from runtime.generation.search import generate

VOCAB = 100
MAX_LENGTH = {"gpt2": 24, "bart": 16, "t5": 16}


class Tiny:
    """A tiny model, its prompts, and eos ids it emits; generate() on both sides."""

    def __init__(self, name, model, input_ids, attention_mask, pad_token_id,
                 decoder_start_token_id=None):
        model.generation_config = GenerationConfig(  # no processors from the model's config
            pad_token_id=pad_token_id, decoder_start_token_id=decoder_start_token_id)
        self.name, self.torch_model = name, model
        self.input_ids, self.attention_mask = input_ids, attention_mask
        self.pad_token_id, self.decoder_start_token_id = pad_token_id, decoder_start_token_id
        self.max_length = MAX_LENGTH[name]
        self.start = 1 if model.config.is_encoder_decoder else input_ids.shape[1]
        greedy = self.reference()
        self.eos = int(greedy[0, self.start + 3])
        self.second_eos = next(int(t) for t in greedy[1, self.start + 2:] if t != self.eos)

    def reference(self, **kwargs):
        """transformers' generate(): sequences, and sequences_scores for beam search."""
        kwargs.setdefault("max_length", self.max_length)
        kwargs.setdefault("eos_token_id", None)
        out = self.torch_model.generate(
            torch.from_numpy(self.input_ids), attention_mask=torch.from_numpy(self.attention_mask),
            pad_token_id=self.pad_token_id, return_dict_in_generate=True, output_scores=True,
            **kwargs)
        if kwargs.get("num_beams", 1) > 1:
            return out.sequences.numpy(), out.sequences_scores.numpy()
        return out.sequences.numpy()

    def ours(self, **kwargs):
        kwargs.setdefault("max_length", self.max_length)
        return generate(TorchGenerationModel(self.torch_model), self.input_ids,
                        self.attention_mask, pad_token_id=self.pad_token_id,
                        decoder_start_token_id=self.decoder_start_token_id, **kwargs)


def _prompts(pad, lengths, left):
    ids = np.random.default_rng(1).integers(3, VOCAB, (len(lengths), max(lengths)))
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        if left:
            mask[row, ids.shape[1] - n:] = 1
        else:
            mask[row, :n] = 1
    return np.where(mask == 1, ids, pad), mask


def _gpt2():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        initializer_range=0.8, bos_token_id=1, eos_token_id=2,
                        attn_implementation="eager")
    ids, mask = _prompts(0, [7, 4, 2], left=True)
    return Tiny("gpt2", GPT2LMHeadModel(config).eval(), ids, mask, pad_token_id=0)


def _bart():
    torch.manual_seed(0)
    config = BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                        init_std=0.12, tie_word_embeddings=False, forced_eos_token_id=None,
                        attn_implementation="eager")
    ids, mask = _prompts(1, [7, 5, 3], left=False)
    return Tiny("bart", BartForConditionalGeneration(config).eval(), ids, mask,
                pad_token_id=1, decoder_start_token_id=2)


def _t5():
    torch.manual_seed(0)
    config = T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                      initializer_factor=1.0, tie_word_embeddings=False,
                      attn_implementation="eager")
    ids, mask = _prompts(0, [7, 5, 3], left=False)
    return Tiny("t5", T5ForConditionalGeneration(config).eval(), ids, mask,
                pad_token_id=0, decoder_start_token_id=0)


@functools.cache
def tiny_model(name: str) -> Tiny:
    return {"gpt2": _gpt2, "bart": _bart, "t5": _t5}[name]()


@pytest.fixture(scope="module", autouse=True)
def quiet_torch_on_one_thread():
    """Tiny models run ten times faster on one thread than on two busy cores; and generate()'s
    notes (pad set to eos, ...) are expected here."""
    threads, verbosity = torch.get_num_threads(), transformers.logging.get_verbosity()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    yield
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity(verbosity)


@pytest.fixture(params=["gpt2", "bart", "t5"])
def tiny(request):
    return tiny_model(request.param)


def _forward_calls(model):
    """A counter of model.forward calls (the decoder steps; the encoder runs on its own)."""
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls, handle


# ---- greedy


@pytest.mark.parametrize("eos", ["none", "one", "two"])
def test_greedy_matches_transformers(tiny, eos):
    eos_token_id = {"none": None, "one": tiny.eos, "two": [tiny.eos, tiny.second_eos]}[eos]
    expected = tiny.reference(eos_token_id=eos_token_id)
    got = tiny.ours(eos_token_id=eos_token_id)
    np.testing.assert_array_equal(got.sequences, expected)
    assert got.sequences.dtype == np.int64 and got.sequences_scores is None
    if eos_token_id is not None:  # the eos ends some rows early, and they are padded
        assert np.isin(expected[:, tiny.start:-1], eos_token_id).any()
        assert (expected[:, -1] == tiny.pad_token_id).any()


# ---- beam search


@pytest.mark.parametrize("early_stopping", [True, False, "never"])
@pytest.mark.parametrize("length_penalty", [0.5, 1.0, 2.0])
def test_beam_search_matches_transformers(tiny, length_penalty, early_stopping):
    options = dict(num_beams=4, num_return_sequences=2, eos_token_id=tiny.eos,
                   length_penalty=length_penalty, early_stopping=early_stopping)
    calls, handle = _forward_calls(tiny.torch_model)
    try:
        sequences, scores = tiny.reference(**options)
    finally:
        handle.remove()
    model = TorchGenerationModel(tiny.torch_model)
    got = generate(model, tiny.input_ids, tiny.attention_mask, max_length=tiny.max_length,
                   pad_token_id=tiny.pad_token_id,
                   decoder_start_token_id=tiny.decoder_start_token_id, **options)
    np.testing.assert_array_equal(got.sequences, sequences)
    np.testing.assert_allclose(got.sequences_scores, scores, rtol=1e-5)
    assert model.calls == len(calls)  # stopped at the same step
    if length_penalty <= 1.0:  # (2.0 favors long hypotheses: they may run to max_length)
        assert (sequences[:, tiny.start:-1] == tiny.eos).any()  # hypotheses finished early


@pytest.mark.parametrize("options", [{"num_beams": 4, "num_return_sequences": 2},
                                     {"do_sample": True, "num_return_sequences": 3, "rng": 0}])
def test_the_first_step_runs_once_per_prompt(tiny, options):
    """transformers runs the first step on every copy of each prompt (one per beam or returned
    sequence); their logits are the same, so the search runs it once per prompt and expands."""
    class Rows:
        def __init__(self, model):
            self.model, self.rows = model, []

        def __getattr__(self, name):
            return getattr(self.model, name)

        def next_logits(self, state, sequences):
            self.rows.append(len(sequences))
            return self.model.next_logits(state, sequences)

    model = Rows(TorchGenerationModel(tiny.torch_model))
    generate(model, tiny.input_ids, tiny.attention_mask, max_length=tiny.max_length,
             pad_token_id=tiny.pad_token_id, decoder_start_token_id=tiny.decoder_start_token_id,
             eos_token_id=tiny.eos, **options)
    copies = max(options.get("num_beams", 1), options["num_return_sequences"])
    batch = len(tiny.input_ids)
    assert model.rows[0] == batch and set(model.rows[1:]) == {batch * copies}


def test_length_penalty_and_early_stopping_change_the_result(tiny):
    """The settings compared above are not all alike: finished hypotheses of different lengths
    compete, and early stopping cuts the search at different steps."""
    results = {
        (penalty, stopping): tiny.ours(num_beams=4, num_return_sequences=2, eos_token_id=tiny.eos,
                                       length_penalty=penalty, early_stopping=stopping).sequences
        for penalty in (0.5, 2.0) for stopping in (True, "never")
    }
    assert not np.array_equal(results[0.5, "never"], results[2.0, "never"])
    assert len({r.tobytes() + bytes(r.shape) for r in results.values()}) >= 3


@pytest.mark.parametrize("eos", ["none", "two"])
def test_beam_search_with_any_number_of_eos_and_every_beam_returned(eos):
    gpt2 = tiny_model("gpt2")
    eos_token_id = None if eos == "none" else [gpt2.eos, gpt2.second_eos]
    options = dict(num_beams=3, num_return_sequences=3, eos_token_id=eos_token_id,
                   length_penalty=0.8, early_stopping=False)
    sequences, scores = gpt2.reference(**options)
    got = gpt2.ours(**options)
    np.testing.assert_array_equal(got.sequences, sequences)
    np.testing.assert_allclose(got.sequences_scores, scores, rtol=1e-5)


def test_a_decoder_prompt_gets_the_start_token_in_front():
    bart = tiny_model("bart")
    prompt = np.array([[5, 6], [7, 8], [9, 10]])
    options = dict(num_beams=2, eos_token_id=bart.eos)
    expected, _ = bart.reference(decoder_input_ids=torch.from_numpy(prompt), **options)
    got = bart.ours(decoder_input_ids=prompt, **options)
    np.testing.assert_array_equal(got.sequences, expected)
    np.testing.assert_array_equal(got.sequences[:, :3], np.c_[np.full(3, 2), prompt])


# ---- the caller's processors and stopping criteria


class _TorchBan(LogitsProcessor):
    def __init__(self, token):
        self.token = token

    def __call__(self, input_ids, scores):
        return scores.index_fill(1, torch.tensor([self.token]), -float("inf"))


def _ban(token):
    def process(sequences, scores):
        scores = scores.copy()
        scores[:, token] = -np.inf
        return scores
    return process


class _TorchRepeatStop(StoppingCriteria):
    def __call__(self, input_ids, scores, **kwargs):
        return input_ids[:, -1] == input_ids[:, -2]


def _repeat_stop(sequences, scores):
    return sequences[:, -1] == sequences[:, -2]


@pytest.mark.parametrize("num_beams", [1, 4])
def test_logits_processor_and_stop_callables(tiny, num_beams):
    """A processor banning the first eos (so the second one ends rows), and a stop criterion
    that ends a row when it repeats its last token: the hooks stop strings will use."""
    # the second eos first: beam search pads finished hypotheses with the first when pad is 0
    options = dict(num_beams=num_beams, eos_token_id=[tiny.second_eos, tiny.eos])
    expected = tiny.reference(logits_processor=LogitsProcessorList([_TorchBan(tiny.eos)]),
                              stopping_criteria=StoppingCriteriaList([_TorchRepeatStop()]),
                              **options)
    got = tiny.ours(logits_processor=_ban(tiny.eos), stop=_repeat_stop, **options)
    np.testing.assert_array_equal(got.sequences, expected[0] if num_beams > 1 else expected)
    assert tiny.eos not in got.sequences[:, tiny.start:]


# ---- sampling


def _top_k(k):
    def process(sequences, scores):
        kth = np.sort(scores, axis=-1)[:, -k][:, None]
        return np.where(scores < kth, -np.inf, scores).astype(np.float32)
    return process


def test_sampling_is_reproducible_with_a_seed():
    gpt2 = tiny_model("gpt2")
    first = gpt2.ours(do_sample=True, rng=7, num_return_sequences=2, eos_token_id=gpt2.eos)
    again = gpt2.ours(do_sample=True, rng=np.random.default_rng(7), num_return_sequences=2,
                      eos_token_id=gpt2.eos)
    other = gpt2.ours(do_sample=True, rng=8, num_return_sequences=2, eos_token_id=gpt2.eos)
    np.testing.assert_array_equal(first.sequences, again.sequences)
    assert first.sequences.shape[0] == 6  # two per prompt, a prompt's rows together
    assert not np.array_equal(first.sequences, other.sequences[:, :first.sequences.shape[1]])


def test_top_k_1_sampling_is_greedy(tiny):
    greedy = tiny.reference(eos_token_id=tiny.eos)
    sampled = tiny.ours(do_sample=True, rng=0, logits_processor=_top_k(1), eos_token_id=tiny.eos)
    np.testing.assert_array_equal(sampled.sequences, greedy)


def test_beam_sampling_is_reproducible():
    bart = tiny_model("bart")
    options = dict(do_sample=True, num_beams=3, num_return_sequences=3, eos_token_id=bart.eos)
    first, again = bart.ours(rng=3, **options), bart.ours(rng=3, **options)
    np.testing.assert_array_equal(first.sequences, again.sequences)
    assert np.all(np.diff(first.sequences_scores.reshape(-1, 3), axis=1) <= 0)  # best first


# ---- streaming


def test_on_tokens_streams_each_step():
    gpt2 = tiny_model("gpt2")
    steps = []
    got = gpt2.ours(eos_token_id=gpt2.eos, on_tokens=steps.append)
    np.testing.assert_array_equal(np.stack(steps, axis=1), got.sequences[:, gpt2.start:])
    with pytest.raises(InputError, match="beam search"):
        gpt2.ours(num_beams=2, on_tokens=steps.append)


# ---- bad arguments


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_beams=2, num_return_sequences=3), "larger than num_beams"),
    (dict(num_return_sequences=2), "greedy search returns one sequence"),
    (dict(num_beams=0), "num_beams must be a positive integer"),
    (dict(early_stopping="sometimes"), "early_stopping must be True, False or 'never'"),
    (dict(max_length=7), "max_length is 7, but the input_ids are already 7 tokens long"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        tiny_model("gpt2").ours(**kwargs)


def test_encoder_decoder_needs_a_start_token():
    bart = tiny_model("bart")
    with pytest.raises(InputError, match="decoder_start_token_id"):
        generate(TorchGenerationModel(bart.torch_model), bart.input_ids, bart.attention_mask,
                 max_length=10)
