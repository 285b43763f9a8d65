"""text2text-generation, summarization and translation: the runtime on exported BART, T5 and
Pegasus bundles (encoder + merged decoder with cache) gives what transformers.pipeline gives on
the same tiny checkpoints: same tokens for greedy and beam search, same texts."""

from __future__ import annotations

import pytest
from generation_checkpoints import TINY_GENERATION
from text_to_text import TEXTS, compare_with_transformers

from runtime.errors import InputError

TASK = "text2text-generation"


@pytest.mark.parametrize("model_type", sorted(m for m, t in TINY_GENERATION if t == TASK))
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    compare_with_transformers(model_type, TASK, runtime_pipeline, reference_pipeline)


def test_one_bundle_serves_every_text_to_text_task(tiny_bundle, reference_pipeline):
    from runtime import pipeline

    bundle = tiny_bundle("t5", "text2text-generation")
    kwargs = {"num_beams": 1, "max_new_tokens": 5}
    summary = pipeline("summarization", model=bundle)(TEXTS[0], **kwargs)
    translation = pipeline("translation_en_to_de", model=bundle)(TEXTS[0], **kwargs)
    plain = pipeline(TASK, model=bundle)(TEXTS[0], **kwargs)
    assert list(summary[0]) == ["summary_text"] and list(translation[0]) == ["translation_text"]
    assert list(plain[0]) == ["generated_text"]
    # the task prefixes of t5's task_specific_params make different encoder inputs
    encoded = []
    for task in ("summarization", "translation_en_to_de", TASK):
        pipe = pipeline(task, model=bundle)
        begin = pipe.model.begin
        pipe.model.begin = lambda ids, mask, begin=begin: (encoded.append(ids.tolist()),
                                                            begin(ids, mask))[1]
        pipe(TEXTS[0], **kwargs)
    assert len(encoded) == 3 and len({str(ids) for ids in encoded}) == 3


def test_streaming_and_errors(tiny_bundle):
    from runtime import pipeline

    rewrite = pipeline(TASK, model=tiny_bundle("bart", TASK))
    pieces = []
    result = rewrite(TEXTS[0], num_beams=1, max_new_tokens=10, streamer=pieces.append)
    assert "".join(pieces).strip() == result[0]["generated_text"].strip()
    with pytest.raises(InputError, match="without beam search"):
        rewrite(TEXTS[0], num_beams=4, streamer=print)
    with pytest.raises(InputError, match="max_new_tokens"):
        rewrite(TEXTS[0], max_new_tokens=-1)
    with pytest.raises(InputError, match="at most 128"):
        rewrite("word " * 300, max_new_tokens=2)
    with pytest.raises(InputError, match="would reach 257 positions"):  # 256 new tokens
        rewrite(TEXTS[0])
    with pytest.raises(InputError, match="num_return_sequences"):
        rewrite(TEXTS[0], num_beams=2, num_return_sequences=4)
