"""text-generation: the runtime on an exported decoder bundle (KV cache in the graph) gives what
transformers.pipeline gives on the same tiny checkpoint, for GPT-2, the decoder family and
today's small LLMs (grouped-query attention, RoPE, sliding windows, ALiBi, LongRoPE): the same
tokens for greedy and beam search with every logits processor, and the same texts; stop strings
stop where transformers stops; sampling is reproducible with a seed; streaming gives the
text."""

from __future__ import annotations

import pytest
from compare import assert_same
from generation_checkpoints import TINY_GENERATION

from runtime.errors import InputError

TASK = "text-generation"
ARCHITECTURES = sorted({model_type for model_type, task in TINY_GENERATION if task == TASK})
PROMPTS = ["The quick brown fox", "Hello world, this is a longer prompt about the weather",
           "a", "Crème brûlée? Ça va!"]
CASES = [
    {"do_sample": False, "max_new_tokens": 12},
    {"do_sample": False, "max_new_tokens": 10, "return_full_text": False},
    {"do_sample": False, "max_new_tokens": 10, "num_beams": 4, "num_return_sequences": 2},
    {"do_sample": False, "max_new_tokens": 10, "num_beams": 3, "length_penalty": 0.5,
     "early_stopping": True},
    {"do_sample": False, "max_new_tokens": 12, "repetition_penalty": 1.5,
     "no_repeat_ngram_size": 2},
    {"do_sample": False, "max_new_tokens": 8, "min_new_tokens": 6, "bad_words_ids": [[5], [7, 8]]},
    {"do_sample": False, "max_new_tokens": 6, "return_tensors": True},
    {"do_sample": False, "max_length": 30, "max_new_tokens": None},
]


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    for prompt in PROMPTS:
        for kwargs in CASES:
            assert_same(runtime(prompt, **kwargs), reference(prompt, **kwargs),
                        f"{model_type} {prompt!r} {kwargs}")
    kwargs = {"do_sample": False, "max_new_tokens": 6}
    assert_same(runtime(PROMPTS[:2], **kwargs), reference(PROMPTS[:2], **kwargs), "list")


def test_eos_and_stop_sequence_end_generation(runtime_pipeline, reference_pipeline):
    runtime, reference = runtime_pipeline("gpt2", TASK), reference_pipeline("gpt2", TASK)
    free = runtime(PROMPTS[0], do_sample=False, max_new_tokens=12, return_tensors=True)
    tokens = free[0]["generated_token_ids"]
    stop_at = tokens[-4]  # a token the model does emit: generation must stop there
    for kwargs in ({"eos_token_id": stop_at}, {"eos_token_id": [99999 % 600, stop_at]}):
        kwargs.update(do_sample=False, max_new_tokens=12)
        assert_same(runtime(PROMPTS[0], **kwargs), reference(PROMPTS[0], **kwargs), str(kwargs))
        ids = runtime(PROMPTS[0], return_tensors=True, **kwargs)[0]["generated_token_ids"]
        assert ids[-1] == stop_at and len(ids) < len(tokens)


# Left padding meets each kind of position: learned (GPT-2, GPT-Neo with its local layers), from
# the mask in the graph (OPT), ALiBi (BLOOM), RoPE with grouped-query attention (Llama), and
# RoPE with sliding windows and soft-capping (Gemma 2). (Phi-3's LongRoPE is left out: whether
# transformers recomputes its cache depends on the padded length, so a batch and its prompts
# one by one differ there in transformers too.)
@pytest.mark.parametrize("model_type", ["gpt2", "gpt_neo", "opt", "bloom", "llama", "gemma2"])
def test_batched_prompts_are_left_padded_and_match_one_by_one(model_type, runtime_pipeline):
    generate = runtime_pipeline(model_type, TASK)
    kwargs = {"do_sample": False, "max_new_tokens": 8}
    one_by_one = [generate(p, **kwargs) for p in PROMPTS]
    assert generate(PROMPTS, batch_size=4, **kwargs) == one_by_one
    beams = {"num_beams": 3, "num_return_sequences": 2, **kwargs}
    assert generate(PROMPTS[:3], batch_size=3, **beams) == [generate(p, **beams)
                                                              for p in PROMPTS[:3]]


@pytest.mark.parametrize("model_type", ["llama", "qwen3", "gemma3_text"])
def test_stop_strings_stop_where_transformers_stops(model_type, runtime_pipeline,
                                                    reference_pipeline):
    runtime, reference = runtime_pipeline(model_type, TASK), reference_pipeline(model_type, TASK)
    free = runtime(PROMPTS[1], do_sample=False, max_new_tokens=12, return_full_text=False)
    text = free[0]["generated_text"]
    stops = [text[len(text) // 2:len(text) // 2 + 2], [text[-3:], "zzz"]]
    for stop in stops:
        kwargs = {"do_sample": False, "max_new_tokens": 12, "stop_strings": stop}
        got = runtime(PROMPTS[1], **kwargs)
        # transformers' pipeline needs the tokenizer passed on for stop strings
        assert_same(got, reference(PROMPTS[1], tokenizer=reference.tokenizer, **kwargs),
                    f"{model_type} {stop!r}")
        assert len(got[0]["generated_text"]) <= len(PROMPTS[1]) + len(text)


@pytest.mark.parametrize("model_type", ["gpt2", "qwen2"])
def test_sampling_is_reproducible_and_top_k_1_is_greedy(model_type, runtime_pipeline):
    generate = runtime_pipeline(model_type, TASK)
    sample = {"do_sample": True, "max_new_tokens": 12, "temperature": 1.5}
    first = generate(PROMPTS[0], seed=3, **sample)
    assert generate(PROMPTS[0], seed=3, **sample) == first
    assert any(generate(PROMPTS[0], seed=s, **sample) != first for s in (4, 5, 6))
    assert (generate(PROMPTS[0], do_sample=True, top_k=1, seed=1, max_new_tokens=12)
            == generate(PROMPTS[0], do_sample=False, max_new_tokens=12))
    for warper in ({"top_p": 0.8}, {"typical_p": 0.9}, {"top_k": 5}):
        assert generate(PROMPTS[1], seed=0, **sample, **warper) == generate(
            PROMPTS[1], seed=0, **sample, **warper)


@pytest.mark.parametrize("model_type", ["gpt2", "mistral"])
def test_streaming_gives_the_generated_text(model_type, runtime_pipeline):
    generate = runtime_pipeline(model_type, TASK)
    kwargs = {"do_sample": False, "max_new_tokens": 12}
    pieces = []
    full = generate(PROMPTS[1], streamer=pieces.append, **kwargs)[0]["generated_text"]
    assert "".join(pieces) == full[len(PROMPTS[1]):].lstrip(" ") or \
        PROMPTS[1] + "".join(pieces) == full
    assert len(pieces) > 1
    assert "".join(generate.stream(PROMPTS[1], **kwargs)) == "".join(pieces)
    with pytest.raises(InputError, match="one prompt"):
        generate(PROMPTS[:2], streamer=print, **kwargs)
    with pytest.raises(InputError, match="no argument|Did you mean"):
        list(generate.stream(PROMPTS[0], max_new_tokenz=3))


def test_bad_input_is_a_clear_error(runtime_pipeline, tiny_bundle, tmp_path):
    generate = runtime_pipeline("gpt2", TASK)
    with pytest.raises(InputError, match="max_new_tokens"):
        generate(PROMPTS[0], max_new_tokens=0)
    with pytest.raises(InputError, match="num_return_sequences"):
        generate(PROMPTS[0], do_sample=False, num_beams=2, num_return_sequences=3)
    with pytest.raises(InputError, match="at most 128 positions"):
        generate("word " * 200, do_sample=False, max_new_tokens=2)
    with pytest.raises(InputError, match="128"):
        generate(PROMPTS[0], do_sample=False, max_new_tokens=500)
    # transformers silently ignores max_length under the pipeline's max_new_tokens=256
    with pytest.raises(InputError, match="max_length=14 would be ignored"):
        generate(PROMPTS[0], do_sample=False, max_length=14)
    with pytest.raises(InputError, match="Did you mean 'max_new_tokens'"):
        generate(PROMPTS[0], max_new_token=3)
    with pytest.raises(InputError, match="Expected a text"):
        generate(42)
    # an empty prompt starts from BOS, as in transformers; without a BOS it is an error
    assert generate("", do_sample=False, max_new_tokens=3)[0]["generated_text"] != ""
    with pytest.raises(InputError, match="no BOS token"):
        generate("", do_sample=False, max_new_tokens=3, bos_token_id=None)
