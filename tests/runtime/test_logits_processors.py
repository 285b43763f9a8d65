"""Logits processors, warpers and stopping criteria against transformers' own, on the same
seeded random tensors: each numpy processor must give transformers' output (bit for bit where
no softmax is involved; the same -inf positions and kept values where one is), and the lists
built from a config must hold the same processors in the same order."""

from __future__ import annotations

import doctest
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tlp = transformers.generation.logits_process
tsc = transformers.generation.stopping_criteria

from runtime.errors import InputError  # noqa: E402
from runtime.generation import logits as L  # noqa: E402
from runtime.generation import stopping as S  # noqa: E402
from runtime.generation.config import (  # noqa: E402
    generation_config_for_inputs,
    model_generation_config,
    resolve_generation_config,
)

# (rows, cur_len, vocab): one row, a small batch, a batch of beams, GPT-2's vocabulary
SHAPES = [(1, 1, 7), (3, 6, 50), (8, 20, 1000), (2, 9, 50257)]


def _tensors(rows, cur_len, vocab, seed, *, ids_vocab=None, kind="normal"):
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(0, ids_vocab or vocab, size=(rows, cur_len), dtype=np.int64)
    scores = (rng.standard_normal((rows, vocab)) * 3).astype(np.float32)
    if kind == "ties":  # many equal scores
        scores = np.round(scores).astype(np.float32)
    elif kind == "neg_inf":  # -inf already present (as after bad words or top-k)
        scores[rng.random((rows, vocab)) < 0.3] = -np.inf
        scores[:, 0] = 1.0  # every row keeps a finite score
    return input_ids, scores


def _reference(processor, input_ids, scores):
    out = processor(torch.from_numpy(input_ids.copy()), torch.from_numpy(scores.copy()))
    return out.numpy()


def _same(ours, input_ids, scores, theirs, *, exact=True, flips=0):
    """ours(...) == theirs(...): bit for bit when ``exact``, else the same -inf positions and
    values within torch's own float32 error (log-softmax sums the vocabulary in float32: about
    1e-5 for 50k tokens; ours sums in float64). ``flips``: tokens per row allowed to fall on the
    other side of a softmax cut-off (see ``_flips``)."""
    before = scores.copy()
    actual = ours(input_ids, scores)
    np.testing.assert_array_equal(scores, before, err_msg="the processor changed its input")
    expected = _reference(theirs, input_ids, scores)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    differ = np.isneginf(actual) != np.isneginf(expected)
    if flips:
        assert differ.sum(axis=-1).max() <= flips, differ.sum(axis=-1)
        actual, expected = actual[~differ], expected[~differ]
    else:
        np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected))
    if exact:
        np.testing.assert_array_equal(actual, expected)
    else:
        atol = 1e-6 if scores.shape[-1] <= 1000 else 2e-5
        np.testing.assert_allclose(actual, expected, rtol=2.5e-7, atol=atol)


def _log_softmax_atol(scores):
    return 1e-6 if scores.shape[-1] <= 1000 else 2e-5


CASES = [(shape, kind) for shape in SHAPES for kind in ("normal", "ties", "neg_inf")]
CASE_IDS = [f"{r}x{n}x{v}-{kind}" for (r, n, v), kind in CASES]


@pytest.mark.parametrize(("shape", "kind"), CASES, ids=CASE_IDS)
def test_processors_equal_transformers(shape, kind):
    rows, cur_len, vocab = shape
    small = min(vocab, 5)  # ids from a few tokens: repeated tokens and repeated n-grams
    for seed, ids_vocab in ((0, vocab), (1, small)):
        ids, scores = _tensors(rows, cur_len, vocab, seed, ids_vocab=ids_vocab, kind=kind)
        for penalty in (1.3, 0.7):
            _same(L.RepetitionPenaltyLogitsProcessor(penalty), ids, scores,
                  tlp.RepetitionPenaltyLogitsProcessor(penalty))
        if cur_len > 2:
            _same(L.RepetitionPenaltyLogitsProcessor(1.5, prompt_ignore_length=2), ids, scores,
                  tlp.RepetitionPenaltyLogitsProcessor(1.5, prompt_ignore_length=2))
        for n in (1, 2, 3, 4):
            _same(L.NoRepeatNGramLogitsProcessor(n), ids, scores,
                  tlp.NoRepeatNGramLogitsProcessor(n))
        eos = [vocab - 1, 0]
        for min_length in (0, cur_len, cur_len + 1):
            _same(L.MinLengthLogitsProcessor(min_length, eos), ids, scores,
                  tlp.MinLengthLogitsProcessor(min_length, eos))
            _same(L.MinLengthLogitsProcessor(min_length, 1), ids, scores,
                  tlp.MinLengthLogitsProcessor(min_length, 1))
        for skip, new in ((0, cur_len), (1, cur_len), (cur_len, 1), (cur_len - 1, 1)):
            _same(L.MinNewTokensLengthLogitsProcessor(skip, new, eos), ids, scores,
                  tlp.MinNewTokensLengthLogitsProcessor(skip, new, eos))
        _same(L.ForcedBOSTokenLogitsProcessor(vocab // 2), ids, scores,
              tlp.ForcedBOSTokenLogitsProcessor(vocab // 2))
        for max_length in (cur_len, cur_len + 1, cur_len + 2):
            _same(L.ForcedEOSTokenLogitsProcessor(max_length, eos), ids, scores,
                  tlp.ForcedEOSTokenLogitsProcessor(max_length, eos))
            _same(L.ForcedEOSTokenLogitsProcessor(max_length, 1), ids, scores,
                  tlp.ForcedEOSTokenLogitsProcessor(max_length, 1))
        suppress = [0, 3, vocab - 1, vocab + 5]  # an id past the vocabulary is ignored
        _same(L.SuppressTokensLogitsProcessor(suppress), ids, scores,
              tlp.SuppressTokensLogitsProcessor(suppress))
        for begin in (cur_len, cur_len + 1):
            _same(L.SuppressTokensAtBeginLogitsProcessor(suppress, begin), ids, scores,
                  tlp.SuppressTokensAtBeginLogitsProcessor(suppress, begin))
        _same(L.InfNanRemoveLogitsProcessor(), ids, scores, tlp.InfNanRemoveLogitsProcessor())
        _same(L.LogitNormalization(), ids, scores, tlp.LogitNormalization(), exact=False)


def test_whisper_timestamp_processor_equals_transformers():
    """Whisper's timestamp rules on sequences of text (below eos), the eos, <|notimestamps|> and
    timestamps after a prompt of three tokens; scores that favour the timestamps in some rows,
    so that both sides of the "a timestamp it is" rule are taken."""
    eos, no_timestamps, vocab, begin = 30, 40, 101, 3  # timestamps: 41..100
    rng = np.random.default_rng(3)
    for case in range(60):
        rows, generated = 6, int(rng.integers(0, 8))
        kinds = rng.random((rows, generated))
        ids = np.where(kinds < 0.5, rng.integers(0, eos, (rows, generated)),
                       np.sort(rng.integers(no_timestamps + 1, vocab, (rows, generated)), axis=1))
        ids = np.concatenate([rng.integers(0, vocab, (rows, begin)), ids], axis=1)
        scores = (rng.standard_normal((rows, vocab)) * 3).astype(np.float32)
        scores[::2, no_timestamps + 1:] += np.float32(case % 4)
        for initial in (None, 5):
            config = transformers.GenerationConfig(no_timestamps_token_id=no_timestamps,
                                                   eos_token_id=eos,
                                                   max_initial_timestamp_index=initial)
            _same(L.WhisperTimeStampLogitsProcessor(no_timestamps, begin, eos, initial), ids,
                  scores, tlp.WhisperTimeStampLogitsProcessor(config, begin_index=begin))


def _bad_words_cases(ids, vocab):
    last = ids[0].tolist()
    words = [[1], [vocab - 1], [2, 3]]
    if len(last) >= 1:
        words.append([last[-1], 4])  # its prefix ends row 0: bans 4 there
    if len(last) >= 2:
        words += [[last[-2], last[-1], 5], [last[-2], last[-1], 5]]  # duplicated: one entry
    if len(last) >= 3:
        words.append(last[-3:] + [6])
    words.append([0] * (len(last) + 2))  # longer than the sequence: ignored
    return words


@pytest.mark.parametrize(("shape", "kind"), CASES, ids=CASE_IDS)
def test_bad_words_equal_transformers(shape, kind):
    rows, cur_len, vocab = shape
    ids, scores = _tensors(rows, cur_len, vocab, 3, ids_vocab=min(vocab, 6), kind=kind)
    words = _bad_words_cases(ids, vocab)
    for eos in (None, 1, [1, vocab - 1], 2):  # a one-token bad word equal to eos is dropped
        _same(L.NoBadWordsLogitsProcessor(words, eos), ids, scores,
              tlp.NoBadWordsLogitsProcessor(words, eos))


def _flips(vocab):
    """Over 50k tokens, torch's float32 softmax sums are off by ~1e-5 (relative), enough to move
    a token whose probability lies that close to a cut-off to the other side: such flips are
    allowed there (one per row; seen: one in typical, in 2 x 50257 x 12 cases). Small
    vocabularies must agree exactly."""
    return 1 if vocab > 1000 else 0


@pytest.mark.parametrize(("shape", "kind"), CASES, ids=CASE_IDS)
def test_warpers_equal_transformers(shape, kind):
    rows, cur_len, vocab = shape
    ids, scores = _tensors(rows, cur_len, vocab, 4, kind=kind)
    flips = _flips(vocab)
    for t in (0.3, 0.7, 1.5):
        _same(L.TemperatureLogitsWarper(t), ids, scores, tlp.TemperatureLogitsWarper(t))
    # 2 and 3: beam sampling keeps len(eos) + 1 (fewer cases for the large vocabulary: time)
    for keep in (1, 2, 3) if vocab <= 1000 else (1, 3):
        for k in (1, 2, 5, 50, vocab + 3):
            _same(L.TopKLogitsWarper(k, min_tokens_to_keep=keep), ids, scores,
                  tlp.TopKLogitsWarper(k, min_tokens_to_keep=keep))
        for eps in (1e-4, 3e-3, 0.1):  # value thresholds: ties are safe
            _same(L.EpsilonLogitsWarper(eps, min_tokens_to_keep=keep), ids, scores,
                  tlp.EpsilonLogitsWarper(eps, min_tokens_to_keep=keep), flips=flips)
            _same(L.EtaLogitsWarper(eps, min_tokens_to_keep=keep), ids, scores,
                  tlp.EtaLogitsWarper(eps, min_tokens_to_keep=keep), flips=flips)
        if kind == "ties":
            continue  # sorted cut-offs with ties across them differ by design: test_top_p_ties
        for p in (0.0, 0.1, 0.5, 0.9, 0.99):
            _same(L.TopPLogitsWarper(p, min_tokens_to_keep=keep), ids, scores,
                  tlp.TopPLogitsWarper(p, min_tokens_to_keep=keep), flips=flips)
        for p in (0.05, 0.2, 0.5, 0.9):
            _same(L.MinPLogitsWarper(p, min_tokens_to_keep=keep), ids, scores,
                  tlp.MinPLogitsWarper(p, min_tokens_to_keep=keep), flips=flips)
        for mass in (0.1, 0.5, 0.9, 0.95):
            _same(L.TypicalLogitsWarper(mass, min_tokens_to_keep=keep), ids, scores,
                  tlp.TypicalLogitsWarper(mass, min_tokens_to_keep=keep), flips=flips)


def test_top_p_ties():
    """Ties that do not straddle the cut-off give transformers' result; ties that do keep the
    tokens with the higher ids (torch's unstable sort keeps an arbitrary subset)."""
    levels = np.array([3.0, 3.0, 1.0, 1.0, 1.0, 0.0, 0.0, 2.0], dtype=np.float32)
    rng = np.random.default_rng(5)
    scores = np.stack([levels, rng.permutation(levels)]).astype(np.float32)
    ids = np.zeros((2, 3), dtype=np.int64)
    probs = np.exp(np.sort(np.unique(levels)))
    counts = np.array([2, 3, 1, 2])  # of 0, 1, 2, 3
    group_mass = probs * counts / (probs * counts).sum()
    ends = np.cumsum(group_mass)
    for g in range(3):  # 1 - top_p between the groups g and g + 1
        top_p = float(1 - (ends[g] + group_mass[g + 1] / counts[g + 1] / 2))
        _same(L.TopPLogitsWarper(top_p), ids, scores, tlp.TopPLogitsWarper(top_p))
    # straddling: one of the two tokens at 3.0 holds a little more than top_p
    top_p = float(group_mass[3] / 2 - 1e-3)
    out = L.TopPLogitsWarper(top_p)(ids, scores[:1])
    assert np.isfinite(out[0]).tolist() == [False, True] + [False] * 6


def test_processors_refuse_bad_values():
    with pytest.raises(InputError, match="repetition_penalty"):
        L.RepetitionPenaltyLogitsProcessor(0.0)
    with pytest.raises(InputError, match="no_repeat_ngram_size"):
        L.NoRepeatNGramLogitsProcessor(0)
    with pytest.raises(InputError, match="temperature"):
        L.TemperatureLogitsWarper(0.0)
    with pytest.raises(InputError, match="top_k"):
        L.TopKLogitsWarper(-1)
    with pytest.raises(InputError, match="top_p"):
        L.TopPLogitsWarper(1.5)
    with pytest.raises(InputError, match="typical_p"):
        L.TypicalLogitsWarper(0.0)
    for words in ([], [[]], [1, 2], [[1, -2]], "ab"):
        with pytest.raises(InputError, match="bad_words_ids"):
            L.NoBadWordsLogitsProcessor(words)
    with pytest.raises(InputError, match="vocabulary has 10"):
        L.NoBadWordsLogitsProcessor([[12]])(np.zeros((1, 2), np.int64),
                                            np.zeros((1, 10), np.float32))
    with pytest.raises(InputError, match="forced_eos_token_id"):
        L.ForcedEOSTokenLogitsProcessor(5, [-1])


def test_log_softmax_and_softmax_close_to_torch():
    _, scores = _tensors(4, 1, 50257, 6)
    scores[0, :100] = -np.inf
    t = torch.from_numpy(scores)
    np.testing.assert_allclose(L.log_softmax(scores), torch.log_softmax(t, -1).numpy(),
                               rtol=2.5e-7, atol=2e-5)
    np.testing.assert_allclose(L.softmax(scores), torch.softmax(t, -1).numpy(), rtol=2e-5,
                               atol=1e-8)


# --- the lists generate() builds ---------------------------------------------------------------
class _Reference(transformers.GenerationMixin):
    """Enough of a model for GenerationMixin's config and list preparation."""

    def __init__(self, config, generation_config):
        self.config = config
        self.generation_config = generation_config


_GPT2 = dict(vocab_size=60, n_positions=64, n_embd=8, n_layer=1, n_head=2)
_BART = dict(vocab_size=60, d_model=8, encoder_layers=1, decoder_layers=1,
             encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=8,
             decoder_ffn_dim=8, max_position_embeddings=64)


def _prepared(model_type, generation_json, input_len, kwargs):
    """(ours, transformers') prepared config for one generate call."""
    if model_type == "gpt2":
        config = transformers.GPT2Config(**_GPT2)
    else:
        config = transformers.BartConfig(**_BART)
    theirs_model = _Reference(config, transformers.GenerationConfig.from_dict(generation_json))
    theirs, _ = theirs_model._prepare_generation_config(None, None, **kwargs)
    theirs_model._prepare_special_tokens(theirs, True, device="cpu")
    theirs = theirs_model._prepare_generated_length(
        theirs, has_default_max_length=kwargs.get("max_length") is None,
        has_default_min_length=kwargs.get("min_length") is None, model_input_name="input_ids",
        input_ids_length=input_len, inputs_tensor=torch.zeros((1, input_len)))
    ours = resolve_generation_config(model_generation_config(generation_json, None),
                                     strict=False, **kwargs)
    ours = generation_config_for_inputs(
        ours, input_ids_length=input_len, is_encoder_decoder=config.is_encoder_decoder,
        max_position_embeddings=config.max_position_embeddings)
    return ours, theirs, theirs_model


LIST_CASES = [
    ("gpt2", {"eos_token_id": 59}, 4, {}),
    ("gpt2", {"eos_token_id": 59}, 4, dict(do_sample=True)),
    ("gpt2", {"eos_token_id": 59}, 4, dict(
        do_sample=True, temperature=0.7, top_k=10, top_p=0.9, typical_p=0.8, min_p=0.05,
        epsilon_cutoff=1e-3, eta_cutoff=1e-3, repetition_penalty=1.2, no_repeat_ngram_size=2,
        bad_words_ids=[[3], [4, 5]], min_length=6, min_new_tokens=2, max_new_tokens=5,
        suppress_tokens=[7], begin_suppress_tokens=[8], forced_eos_token_id=59,
        renormalize_logits=True, remove_invalid_values=True)),
    ("gpt2", {"eos_token_id": [58, 59]}, 3, dict(
        do_sample=True, num_beams=3, top_k=2, top_p=0.5, typical_p=0.5)),  # keeps 3 tokens
    ("gpt2", {}, 3, dict(do_sample=True, num_beams=2, top_k=1, min_length=5)),  # no eos: keeps 2
    ("gpt2", {"eos_token_id": 59, "do_sample": True, "top_k": 0, "top_p": 1.0}, 3, {}),
    ("bart", {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2,
              "decoder_start_token_id": 2, "forced_bos_token_id": 0, "forced_eos_token_id": 2,
              "num_beams": 4, "no_repeat_ngram_size": 3, "min_length": 5, "max_length": 12,
              "length_penalty": 2.0, "early_stopping": True}, 1, {}),
    ("bart", {"eos_token_id": 2, "decoder_start_token_id": 2, "forced_bos_token_id": 0}, 1,
     dict(begin_suppress_tokens=[5, 6], suppress_tokens=[9], max_new_tokens=6)),
    ("bart", {"eos_token_id": 2, "decoder_start_token_id": 2}, 1,
     dict(begin_suppress_tokens=[5, 6])),
]


@pytest.mark.parametrize(("model_type", "generation_json", "input_len", "kwargs"), LIST_CASES)
def test_logits_processors_list_equals_transformers(model_type, generation_json, input_len,
                                                   kwargs):
    ours, theirs, model = _prepared(model_type, generation_json, input_len, kwargs)
    mine = L.logits_processors(ours, input_len)
    reference = model._get_logits_processor(
        theirs, input_ids_seq_length=input_len,
        encoder_input_ids=torch.zeros((1, input_len), dtype=torch.long), device="cpu",
        model_kwargs={})
    assert [type(p).__name__ for p in mine] == [type(p).__name__ for p in reference]
    # and their composed effect, at every length up to max_length
    rng = np.random.default_rng(7)
    rows = 3
    sequences = rng.integers(0, 10, size=(rows, ours.max_length), dtype=np.int64)
    for cur_len in range(input_len, ours.max_length):
        ids = sequences[:, :cur_len]
        scores = (rng.standard_normal((rows, 60)) * 3).astype(np.float32)
        if ours.num_beams > 1:
            scores = L.log_softmax(scores)
        exact = not ours.do_sample and not ours.renormalize_logits
        _same(mine, ids, scores, reference, exact=exact)

    criteria = S.stopping_criteria(ours)
    reference_criteria = model._get_stopping_criteria(theirs, tsc.StoppingCriteriaList())
    assert [type(c).__name__ for c in criteria] == [type(c).__name__ for c in reference_criteria]
    assert criteria.max_length == reference_criteria.max_length
    for cur_len in range(input_len, ours.max_length + 1):
        ids = sequences[:, :cur_len].copy()
        ids[0, -1] = (ours.eos_token_ids or (0,))[-1]
        expected = reference_criteria(torch.from_numpy(ids), None)
        np.testing.assert_array_equal(criteria(ids), expected)


def test_custom_processors_go_where_transformers_puts_them():
    """A caller's processors (Whisper's): one of a type the config makes replaces it; the
    others follow the config's processors, before the warpers and the renormalization."""
    kwargs = dict(do_sample=True, top_k=5, repetition_penalty=1.2, suppress_tokens=[7],
                  renormalize_logits=True)
    ours, theirs, model = _prepared("gpt2", {"eos_token_id": 59}, 4, kwargs)
    mine = L.logits_processors(ours, 4, custom=[L.SuppressTokensLogitsProcessor([3]),
                                                L.SuppressTokensAtBeginLogitsProcessor([5], 4)])
    reference = model._get_logits_processor(
        theirs, input_ids_seq_length=4, encoder_input_ids=torch.zeros((1, 4), dtype=torch.long),
        device="cpu", model_kwargs={}, logits_processor=tlp.LogitsProcessorList([
            tlp.SuppressTokensLogitsProcessor([3]),
            tlp.SuppressTokensAtBeginLogitsProcessor([5], 4)]))
    assert [type(p).__name__ for p in mine] == [type(p).__name__ for p in reference]
    assert mine[1].suppress_tokens == (3,)  # the caller's, not the config's [7]
    ids, scores = _tensors(3, 4, 60, seed=9)
    _same(mine, ids, scores, reference, exact=False)


# --- stopping criteria ---------------------------------------------------------------------------
def test_max_length_and_eos_criteria_equal_transformers():
    rng = np.random.default_rng(8)
    for cur_len in (1, 5, 6, 7):
        ids = rng.integers(0, 6, size=(5, cur_len), dtype=np.int64)
        t = torch.from_numpy(ids)
        for max_length in (5, 6):
            np.testing.assert_array_equal(S.MaxLengthCriteria(max_length)(ids),
                                          tsc.MaxLengthCriteria(max_length)(t, None))
        for eos in (1, [1, 4], [9]):
            np.testing.assert_array_equal(S.EosTokenCriteria(eos)(ids),
                                          tsc.EosTokenCriteria(eos)(t, None))
    assert S.MaxTimeCriteria(10.0)(ids).tolist() == [False] * 5
    assert S.MaxTimeCriteria(0.5, initial_timestamp=0.0)(ids).tolist() == [True] * 5


def _tokenizers():
    sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
    from generation_checkpoints import gpt2_tokenizer, t5_tokenizer

    from runtime.text.tokenizer import TextTokenizer

    pairs = []
    for make in (gpt2_tokenizer, t5_tokenizer):
        reference = make()
        ours = TextTokenizer(reference.backend_tokenizer.to_str(), {})
        pairs.append((ours, reference))
    return pairs


STOP_STRINGS = ["stop", "the end", "\n\n", "a", "dog.", "Ö", "xyzzy", " cat sits"]
TEXTS = ["I will stop here", "stopping the engine", "laststop", "the quick brown fox",
         "This is the end.", "the endless road", "one\n\ntwo", "a dog. A cat sits outside",
         "Öl und Wasser", "no match in this text", "catsits", "xyzzyx"]


@pytest.fixture(scope="module")
def tokenizer_pairs():
    return _tokenizers()


def test_stop_strings_stop_at_transformers_steps(tokenizer_pairs):
    rng = np.random.default_rng(9)
    stops_seen = 0
    for ours, reference in tokenizer_pairs:
        vocab = len(reference)
        for stops in ([s] for s in STOP_STRINGS):
            mine = S.StopStringCriteria(ours, stops)
            try:
                theirs = tsc.StopStringCriteria(reference, stops)
            except ValueError:  # no token can end the string: transformers refuses, ours never
                theirs = lambda ids, scores: torch.zeros(ids.shape[0], dtype=torch.bool)  # noqa: E731
            for text in TEXTS:
                sequence = reference(text, add_special_tokens=False)["input_ids"]
                prefix = rng.integers(0, vocab, size=3).tolist()
                sequence = np.array([prefix + sequence], dtype=np.int64)
                for step in range(1, sequence.shape[1] + 1):  # every step of a generation
                    ids = sequence[:, :step]
                    expected = theirs(torch.from_numpy(ids), None).tolist()
                    assert mine(ids).tolist() == expected, (
                        stops, reference.convert_ids_to_tokens(ids[0]))
                    stops_seen += expected[0]
        # several strings, batches, random ids and ids outside the vocabulary
        mine = S.StopStringCriteria(ours, STOP_STRINGS)
        theirs = tsc.StopStringCriteria(reference, STOP_STRINGS)
        ids = rng.integers(0, vocab + 3, size=(400, 12), dtype=np.int64)
        np.testing.assert_array_equal(mine(ids), theirs(torch.from_numpy(ids), None).numpy())
        hits = np.array([[*reference("so stop", add_special_tokens=False)["input_ids"]]])
        assert mine(hits).tolist() == [True]
    assert stops_seen >= 20  # the texts do reach their stop strings


def test_stopping_criteria_needs_a_tokenizer_for_stop_strings(tokenizer_pairs):
    config = resolve_generation_config(model_generation_config({"eos_token_id": 1}, None),
                                       stop_strings="stop")
    with pytest.raises(InputError, match="tokenizer"):
        S.stopping_criteria(config)
    criteria = S.stopping_criteria(config, tokenizer_pairs[0][0])
    assert [type(c).__name__ for c in criteria] == ["MaxLengthCriteria", "StopStringCriteria",
                                                    "EosTokenCriteria"]
    assert criteria.has_eos


@pytest.mark.parametrize("module", ["config", "logits", "stopping"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"runtime.generation.{module}"))
    assert result.failed == 0 and result.attempted > 0
