"""image-to-text with vision-encoder-decoder models: the runtime on the exported tiny TrOCR
(ViT encoder, TrOCR decoder) and Donut (Swin encoder, mBART decoder) bundles gives what
transformers.pipeline gives on the same checkpoints, on real photos and on documents drawn by
Pillow, with the pipeline's defaults, max_new_tokens, generate_kwargs (beam search, a Donut task
prompt as decoder_input_ids) and lists of images; and clear errors where transformers refuses."""

from __future__ import annotations

import pytest
import torch
from compare import assert_same
from document_checkpoints import TINY_DOCUMENT, document_images
from images import all_images, photos

from runtime import pipeline
from runtime.errors import InputError

TASK = "image-to-text"
ARCHITECTURES = [model_type for model_type, task in TINY_DOCUMENT if task == TASK]
DONUT = ("vision-encoder-decoder", "document-question-answering")  # its checkpoint


@pytest.fixture(scope="module")
def donut(tiny_checkpoint, tmp_path_factory):
    """(runtime, reference) image-to-text pipelines on the tiny Donut."""
    import transformers

    from exporter import bundle_from_checkpoint

    checkpoint = tiny_checkpoint(*DONUT)
    bundle = bundle_from_checkpoint(checkpoint, tmp_path_factory.mktemp("donut") / "bundle",
                                    task=TASK)
    return (pipeline(TASK, model=bundle),
            transformers.pipeline(TASK, model=str(checkpoint), device="cpu"))


CASES = {
    "defaults": {},
    "max_new_tokens": {"max_new_tokens": 5},
    "beams": {"generate_kwargs": {"num_beams": 3, "max_new_tokens": 9}},
    "no-repeat": {"max_new_tokens": 12, "generate_kwargs": {"no_repeat_ngram_size": 2}},
}


@pytest.mark.parametrize("kwargs", CASES.values(), ids=CASES)
@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_trocr_matches_transformers(model_type, kwargs, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    images = [*all_images(), *document_images()]
    if not kwargs:  # up to 256 new tokens: a few images
        images = [photos()[0], document_images()[0]]
    expected = reference(images, **kwargs)
    assert_same(runtime(images, **kwargs), expected, str(kwargs))
    # the tiny model writes something, and not the same for every image
    assert len({result[0]["generated_text"] for result in expected}) >= 2
    image = document_images()[0]
    assert_same(runtime(image, **kwargs), reference(image, **kwargs), f"one image {kwargs}")


def test_pipeline_arguments_are_defaults(runtime_pipeline, reference_pipeline):
    runtime = pipeline(TASK, model=runtime_pipeline(ARCHITECTURES[0], TASK).bundle,
                       max_new_tokens=4)
    reference = reference_pipeline(ARCHITECTURES[0], TASK)
    image = photos()[1]
    assert_same(runtime(image), reference(image, max_new_tokens=4))
    assert_same(runtime(images=image, max_new_tokens=6), reference(image, max_new_tokens=6))
    # a decoder prompt given to pipeline(...) (TrOCR's start token </s> put first, as there)
    prompted = pipeline(TASK, model=runtime.bundle,
                        generate_kwargs={"decoder_input_ids": [[40, 41]], "max_new_tokens": 4})
    assert_same(prompted(image), reference(image, generate_kwargs={
        "decoder_input_ids": torch.tensor([[40, 41]]), "max_new_tokens": 4}))


@pytest.mark.parametrize("kwargs", [CASES["max_new_tokens"], CASES["beams"]],
                         ids=["max_new_tokens", "beams"])
def test_donut_matches_transformers(donut, kwargs):
    runtime, reference = donut
    images = [*photos()[:2], *document_images()]
    assert_same(runtime(images, **kwargs), reference(images, **kwargs), str(kwargs))
    image = document_images()[0]  # the defaults: up to 256 new tokens
    assert_same(runtime(image), reference(image), "defaults")


def test_donut_task_prompt_matches_transformers(donut):
    """CORD-style parsing: the decoder starts from <s_cord-v2> (transformers puts no start
    token in front of a Donut prompt)."""
    runtime, reference = donut
    prompt = runtime.tokenizer.encode_batch(["<s_cord-v2>"], add_special_tokens=False)[0].ids
    assert len(prompt) == 1
    for image in document_images()[:2]:
        expected = reference(image, generate_kwargs={
            "decoder_input_ids": torch.tensor([prompt]), "max_new_tokens": 10})
        got = runtime(image, generate_kwargs={"decoder_input_ids": [prompt],
                                              "max_new_tokens": 10})
        assert_same(got, expected)
        ids = runtime.generate_image(image, runtime.call_config({"max_new_tokens": 10}),
                                     runtime._decoder_prompt(prompt)).sequences[0]
        assert ids[0] == prompt[0]  # as it is: no start token in front


def test_errors_are_clear(runtime_pipeline):
    runtime = runtime_pipeline(ARCHITECTURES[0], TASK)
    image = photos()[0]
    with pytest.raises(InputError, match="prompt is not possible"):
        runtime(image, prompt="a photo of")
    with pytest.raises(InputError, match="both as an argument and in generate_kwargs"):
        runtime(image, max_new_tokens=3, generate_kwargs={"max_new_tokens": 4})
    with pytest.raises(InputError, match="generate_kwargs must be a dict"):
        runtime(image, generate_kwargs=[3])
    with pytest.raises(InputError, match="decoder_input_ids must be the token ids"):
        runtime(image, generate_kwargs={"decoder_input_ids": [[1, 2], [3, 4]]})
    with pytest.raises(InputError, match="decoder.max_position_embeddings"):
        runtime(image, max_new_tokens=10_000)
    with pytest.raises(InputError, match="needs images"):
        runtime()


def test_bench_against_transformers(tiny_bundle, tmp_path, capsys):
    """`edgeport bench --against transformers`: both sides generate the same number of tokens
    from the same generated photos (transformers takes the settings in generate_kwargs)."""
    import json

    from runtime.cli import main

    path = tmp_path / "report.json"
    assert main(["bench", str(tiny_bundle(ARCHITECTURES[0], TASK)), "--iterations", "2",
                 "--warmup", "1", "--batch", "1", "2", "--max-new-tokens", "3", "--against",
                 "transformers", "--cold-starts", "0", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert [(r["backend"], r["batch"]) for r in report["runs"]] == [
        ("fp32", 1), ("transformers", 1), ("fp32", 2), ("transformers", 2)]
    for ours, theirs in zip(report["runs"][::2], report["runs"][1::2]):
        assert (theirs["generation"]["new_tokens_per_call"]
                == ours["generation"]["new_tokens_per_call"] == 3 * ours["batch"])
    assert "Speed-up over transformers" in capsys.readouterr().out
