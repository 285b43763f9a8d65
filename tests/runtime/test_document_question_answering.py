"""document-question-answering with Donut: the runtime on the exported tiny Donut bundle (Swin
encoder, mBART decoder, XLM-RoBERTa tokenizer with Donut's tokens) gives what
transformers.pipeline gives on the same checkpoint: the task prompt
<s_docvqa><s_question>...</s_question><s_answer> as the decoder's start, the answer read back
from <s_answer>...</s_answer>, or None; for every way of asking (image and question, a dict, a
list of dicts); and clear errors."""

from __future__ import annotations

import pytest
from compare import assert_same
from document_checkpoints import TINY_DOCUMENT, document_images
from images import photos

from runtime import pipeline
from runtime.errors import BundleError, InputError
from runtime.tasks.document_question_answering import DocumentQuestionAnsweringPipeline

TASK = "document-question-answering"
ARCHITECTURES = [model_type for model_type, task in TINY_DOCUMENT if task == TASK]
QUESTIONS = ["What is the total?", "Who sold the coffee?", "invoice number"]


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    images = [*document_images(), photos()[0]]
    # the pipeline's defaults: up to 256 new tokens, for one question
    assert_same(runtime(images[0], QUESTIONS[0]), reference(images[0], QUESTIONS[0]))
    batch = [{"image": image, "question": question}
             for image, question in zip(images, QUESTIONS)]
    assert_same(runtime(batch), reference(batch), "a list of dicts")
    assert_same(runtime(batch[0], top_k=2), reference(batch[0], top_k=2), "one dict")
    assert_same(runtime(image=images[0], question=QUESTIONS[0]),
                reference(image=images[0], question=QUESTIONS[0]), "keywords")


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_answers_are_read_back(model_type, runtime_pipeline, tiny_checkpoint):
    """An answer between <s_answer> and </s_answer> is found (the random tiny model seldom
    closes one: transformers' parsing is run on decoded sequences made to hold one)."""
    import transformers

    runtime = runtime_pipeline(model_type, TASK)
    reference = transformers.pipeline(TASK, model=str(tiny_checkpoint(model_type, TASK)))
    tokenizer = runtime.tokenizer
    text = ("<s_docvqa><s_question>What is the total?</s_question><s_answer> 6.85 "
            "</s_answer></s>")
    ids = tokenizer.encode_batch([text], add_special_tokens=False)[0].ids
    import torch

    expected = reference.postprocess_encoder_decoder_single(
        {"sequences": torch.tensor([ids])})
    assert expected == {"answer": "6.85"}
    sequence = tokenizer.decode(ids)
    assert "<s_answer>" in sequence


@pytest.mark.parametrize("settings", [{"max_new_tokens": 12},
                                      {"max_new_tokens": 5, "num_beams": 2}])
def test_generation_settings_given_to_the_pipeline(settings, runtime_pipeline, tiny_checkpoint):
    import transformers

    runtime = pipeline(TASK, model=runtime_pipeline(ARCHITECTURES[0], TASK).bundle, **settings)
    reference = transformers.pipeline(TASK, model=str(tiny_checkpoint(ARCHITECTURES[0], TASK)),
                                      **settings)
    for image in [*document_images(), photos()[0]]:
        for question in QUESTIONS:
            assert_same(runtime(image, question), reference(image, question), question)


def test_errors_are_clear(runtime_pipeline, tiny_bundle):
    ask = runtime_pipeline(ARCHITECTURES[0], TASK)
    image = document_images()[0]
    with pytest.raises(InputError, match="top_k must be an integer >= 1"):
        ask(image, QUESTIONS[0], top_k=0)
    with pytest.raises(InputError, match="an image with a question"):
        ask([{"image": image}])
    with pytest.raises(InputError, match="needs an image and a question"):
        ask([])
    with pytest.raises(InputError, match="question must be a string"):
        ask(image, 42)
    with pytest.raises(InputError, match="Unknown generation argument 'doc_strid'"):
        ask(image, QUESTIONS[0], doc_strid=3)
    with pytest.raises(InputError, match="the question makes the decoder's prompt"):
        ask(image, QUESTIONS[0], generate_kwargs={"decoder_input_ids": [[0]]})
    # a TrOCR bundle is no Donut
    trocr = tiny_bundle("vision-encoder-decoder", "image-to-text")
    with pytest.raises(BundleError, match="runs Donut"):
        pipeline(TASK, model=trocr)
    assert DocumentQuestionAnsweringPipeline.task == TASK


def test_bench_against_transformers(tiny_bundle, tmp_path, capsys):
    """`edgeport bench --against transformers`: the same question of every generated photo,
    with the pipelines' own generation settings on both sides (transformers takes none in a
    call), which give the same tokens."""
    import json

    from runtime.cli import main

    path = tmp_path / "report.json"
    assert main(["bench", str(tiny_bundle(ARCHITECTURES[0], TASK)), "--iterations", "1",
                 "--warmup", "1", "--batch", "1", "--against", "transformers",
                 "--cold-starts", "0", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    ours, theirs = report["runs"]
    assert (ours["backend"], theirs["backend"]) == ("fp32", "transformers")
    assert (theirs["generation"]["new_tokens_per_call"]
            == ours["generation"]["new_tokens_per_call"] > 0)
    assert "Speed-up over transformers" in capsys.readouterr().out
