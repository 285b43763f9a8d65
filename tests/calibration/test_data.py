"""Calibration data: feeds made by the bundle's own runtime preprocessing, with clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calibration.data import feeds_from_path, load_samples
from runtime import Bundle, InputError
from runtime.text.tokenizer import TextTokenizer

LINES = [f"Sentence {i}: the quick brown fox number {i} jumps." for i in range(30)]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(LINES[:15] + ["", "   "] + LINES[15:]) + "\n")
    return path


def test_text_lines_become_the_runtimes_feeds(tiny_bundle, text_file):
    bundle = Bundle.load(tiny_bundle("bert", "text-classification"))
    samples = load_samples(bundle, text_file)
    assert len(samples) == 30  # blank lines dropped
    assert sorted(samples.inputs) == sorted(LINES)
    tokenizer = TextTokenizer.from_dir(bundle.path)
    for text, feed in zip(samples.inputs, samples.feeds):
        assert sorted(feed) == ["attention_mask", "input_ids", "token_type_ids"]
        np.testing.assert_array_equal(feed["input_ids"][0], tokenizer.encode_batch([text])[0].ids)


def test_sample_count_and_seeded_shuffle(tiny_bundle, text_file):
    bundle = Bundle.load(tiny_bundle("bert", "text-classification"))
    first = load_samples(bundle, text_file, samples=10, seed=1).inputs
    assert len(first) == 10 and len(set(first)) == 10
    assert load_samples(bundle, text_file, samples=10, seed=1).inputs == first
    assert load_samples(bundle, text_file, samples=10, seed=2).inputs != first
    with pytest.raises(InputError, match="samples must be a positive int"):
        load_samples(bundle, text_file, samples=0)


def test_question_answering_reads_json_lines(tiny_bundle, tmp_path, text_file):
    bundle = Bundle.load(tiny_bundle("bert", "question-answering"))
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps({"question": f"Who is {i}?", "context": LINES[i]})
                              for i in range(5)))
    feeds = feeds_from_path(bundle, path)
    assert len(feeds) == 5
    assert all(feed["token_type_ids"].max() == 1 for feed in feeds)  # question + context pairs
    with pytest.raises(InputError, match="needs JSON lines with 'question' and 'context'"):
        feeds_from_path(bundle, text_file)
    path.write_text('{"question": "q"}\n')
    with pytest.raises(InputError, match="needs 'question' and 'context'"):
        feeds_from_path(bundle, path)
    path.write_text('{"question": "q", \n')
    with pytest.raises(InputError, match="qa.jsonl:1 is not valid JSON"):
        feeds_from_path(bundle, path)


def test_npz_arrays_named_as_the_inputs(tiny_bundle, tmp_path):
    bundle = Bundle.load(tiny_bundle("distilbert", "fill-mask"))
    ids = np.random.default_rng(0).integers(1000, 2000, size=(6, 12))
    path = tmp_path / "feeds.npz"
    np.savez(path, input_ids=ids, attention_mask=np.ones_like(ids))
    feeds = feeds_from_path(bundle, path, samples=4)
    assert len(feeds) == 4 and feeds[0]["input_ids"].shape == (1, 12)
    np.savez(path, input_ids=ids)
    with pytest.raises(InputError, match=r"lacks arrays for the graph inputs \['attention_mask'\]"):
        feeds_from_path(bundle, path)


def test_folders(tiny_bundle, tmp_path):
    bundle = Bundle.load(tiny_bundle("bert", "text-classification"))
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(InputError, match="is empty"):
        feeds_from_path(bundle, folder)
    (folder / "a.txt").write_text("one\ntwo\n")
    (folder / "b.txt").write_text("three\n")
    assert len(feeds_from_path(bundle, folder)) == 3
    (folder / "cat.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(InputError, match="holds image files, but this text-classification "
                                         "bundle reads text"):
        feeds_from_path(bundle, folder)


def test_missing_empty_and_unknown_files(tiny_bundle, tmp_path):
    bundle = Bundle.load(tiny_bundle("bert", "text-classification"))
    with pytest.raises(InputError, match="does not exist"):
        feeds_from_path(bundle, tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(InputError, match="holds no text lines"):
        feeds_from_path(bundle, tmp_path / "empty.txt")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="Cannot read calibration data from data.csv"):
        feeds_from_path(bundle, tmp_path / "data.csv")


def test_dim_ranges_for_tensorrt_profiles(tiny_bundle, text_file):
    from calibration.data import dim_ranges

    bundle = Bundle.load(tiny_bundle("bert", "text-classification"))
    feeds = feeds_from_path(bundle, text_file)
    lengths = sorted(feed["input_ids"].shape[1] for feed in feeds)
    ranges = dim_ranges(bundle, feeds)
    assert ranges == {"batch": (1, 1, 1),
                      "sequence": (lengths[0], int(np.median(lengths)), lengths[-1])}
    with pytest.raises(InputError, match="declares dims"):
        dim_ranges(bundle, [{"input_ids": np.zeros(3, np.int64)}])
    with pytest.raises(InputError, match="No feed holds an input"):
        dim_ranges(bundle, [{"pixel_values": np.zeros((1, 3))}])
