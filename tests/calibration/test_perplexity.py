"""Perplexity of decoder-only bundles (``calibration.perplexity``, ``compare --perplexity``): the
fp32 graph against the checkpoint in PyTorch and against the loss transformers computes itself,
the sliding windows (every token but the first scored once), quantized variants and their
ratios, the report's section, and the errors; on tiny GPT-2 and Llama bundles.

Measured (onnxruntime 1.31, CPU; the tiny random models are worse than a uniform guess over
their ~600 tokens): on SENTENCES in one window, fp32 and PyTorch agree to 5e-8 relative, and
PyTorch and exp(transformers' loss) to 1e-6 (its loss is float32). On all of SENTENCES, window
64, stride 32: Llama's fp32 1098.38, dynamic int8 1098.51 (x1.0001), int4 1102.14 (x1.0034).
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from sentences import SENTENCES

from calibration.compare import compare_variants
from calibration.perplexity import (
    Window,
    perplexity_from_text,
    perplexity_text,
    windows_over,
)
from calibration.quantize import variant_from_bundle
from runtime import Bundle, InputError
from runtime.cli import main

SHORT = " ".join(SENTENCES[:4])  # one window of the tiny models' 128 positions
LONG = "\n".join(SENTENCES)  # about 1,700 tokens


@pytest.fixture(scope="module")
def quantized(tiny_bundle, tmp_path_factory):
    """quantized(model_type) -> a private copy of the tiny bundle with a dynamic int8 (int8) and
    an int4 (q4) variant, made once for the module."""
    cache = {}

    def make(model_type: str) -> Bundle:
        if model_type not in cache:
            path = shutil.copytree(tiny_bundle(model_type, "text-generation"),
                                   tmp_path_factory.mktemp(f"ppl-{model_type}") / "bundle")
            variant_from_bundle(path, "dynamic-int8")
            variant_from_bundle(path, "int4")
            cache[model_type] = Bundle.load(path)
        return cache[model_type]

    return make


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * abs(b)


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_one_window_equals_pytorch_and_transformers_loss(model_type, tiny_bundle,
                                                         tiny_checkpoint):
    import torch
    import transformers

    bundle = Bundle.load(tiny_bundle(model_type, "text-generation"))
    checkpoint = tiny_checkpoint(model_type, "text-generation")
    text = perplexity_text(bundle, SHORT)
    # the bundle's tokenizer, special tokens as transformers adds them (Llama's BOS first)
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    expected_ids = tokenizer(SHORT)["input_ids"]
    assert text.ids.tolist() == expected_ids
    assert (text.ids[0] == tokenizer.bos_token_id) == (model_type == "llama")
    assert text.window == 128 and text.stride == 64  # the model's positions, fewer than 512
    assert text.windows == (Window(0, len(expected_ids), 1),)

    section = perplexity_from_text(bundle, SHORT, reference="pytorch")
    assert section["tokens"] == len(expected_ids) and section["scored"] == len(expected_ids) - 1
    assert list(section["variants"]) == ["fp32"] and section["reference"] == "pytorch"
    pytorch, fp32 = section["pytorch"], section["variants"]["fp32"]
    assert pytorch["tokens"] == fp32["tokens"] == len(expected_ids) - 1
    assert pytorch["windows"] == fp32["windows"] == 1
    assert _close(fp32["perplexity"], pytorch["perplexity"], 1e-4)  # measured 5e-8
    assert fp32["perplexity"] == pytest.approx(math.exp(fp32["nll_mean"]), rel=1e-12)
    assert fp32["ratio_vs_fp32"] == 1.0
    assert fp32["ratio_vs_pytorch"] == pytest.approx(fp32["perplexity"] / pytorch["perplexity"])

    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    ids = torch.tensor([expected_ids])
    with torch.no_grad():
        loss = float(model(ids, labels=ids).loss)
    assert _close(pytorch["perplexity"], math.exp(loss), 1e-5)  # measured 1e-6


def _guide_perplexity(model, ids: np.ndarray, window: int, stride: int) -> tuple[float, int]:
    """The Hugging Face guide's loop ("Perplexity of fixed-length models"), counting the labels
    each window's loss is the mean of."""
    import torch

    ids = torch.from_numpy(ids)[None]
    total, count, previous = 0.0, 0, 0
    for begin in range(0, ids.shape[1], stride):
        end = min(begin + window, ids.shape[1])
        new = end - previous
        inputs = ids[:, begin:end]
        labels = inputs.clone()
        labels[:, :-new] = -100
        with torch.no_grad():
            loss = float(model(inputs, labels=labels).loss)
        scored = int((labels[:, 1:] != -100).sum())
        total, count, previous = total + loss * scored, count + scored, end
        if end == ids.shape[1]:
            break
    return math.exp(total / count), count


@pytest.mark.parametrize("tokens, window, stride", [(10, 4, 2), (1687, 32, 8), (7, 8, 4),
                                                    (9, 8, 7), (100, 2, 1), (33, 32, 16)])
def test_windows_score_every_token_but_the_first_once(tokens, window, stride):
    spans = windows_over(tokens, window, stride)
    scored = [t for span in spans for t in range(span.first, span.end)]
    assert scored == list(range(1, tokens))
    assert spans[0].begin == 0 and spans[-1].end == tokens
    for span in spans:
        assert span.end - span.begin <= window and span.begin < span.first
    for span in spans[1:]:  # later windows: the context before the scored tokens
        assert span.first - span.begin == window - stride or span.end == tokens


def test_sliding_windows_on_a_bundle(tiny_bundle, tiny_checkpoint):
    import transformers

    bundle = Bundle.load(tiny_bundle("gpt2", "text-generation"))
    section = perplexity_from_text(bundle, LONG, reference="pytorch", window=32, stride=8)
    text = perplexity_text(bundle, LONG, window=32, stride=8)
    assert section["window"] == 32 and section["stride"] == 8
    assert section["scored"] == section["tokens"] - 1 == len(text.ids) - 1
    assert section["windows"] == len(windows_over(len(text.ids), 32, 8)) > 100
    pytorch, fp32 = section["pytorch"], section["variants"]["fp32"]
    assert pytorch["tokens"] == fp32["tokens"] == len(text.ids) - 1
    assert _close(fp32["perplexity"], pytorch["perplexity"], 1e-4)
    # the same windows, as the guide's loop scores them with transformers' own loss
    model = transformers.AutoModelForCausalLM.from_pretrained(
        tiny_checkpoint("gpt2", "text-generation")).eval()
    expected, count = _guide_perplexity(model, text.ids, 32, 8)
    assert count == len(text.ids) - 1 and _close(pytorch["perplexity"], expected, 1e-5)
    # a window of context changes what the tokens after the first window are scored on
    whole = perplexity_from_text(bundle, LONG, window=128)["variants"]["fp32"]
    assert whole["tokens"] == fp32["tokens"] and whole["perplexity"] != fp32["perplexity"]


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_quantized_variants(model_type, quantized):
    bundle = quantized(model_type)
    section = perplexity_from_text(bundle, LONG, reference="pytorch", window=64)
    assert list(section["variants"]) == ["fp32", "int8", "q4"]
    pytorch, fp32 = section["pytorch"]["perplexity"], section["variants"]["fp32"]["perplexity"]
    for name in ("int8", "q4"):
        variant = section["variants"][name]
        assert math.isfinite(variant["perplexity"]) and variant["perplexity"] != fp32
        assert variant["tokens"] == section["scored"] and variant["windows"] == 52
        assert variant["ratio_vs_fp32"] == pytest.approx(variant["perplexity"] / fp32)
        assert variant["ratio_vs_pytorch"] == pytest.approx(variant["perplexity"] / pytorch)
        assert 0.9 < variant["ratio_vs_fp32"] < 1.1  # measured 0.9993 to 1.011
    # without PyTorch: no PyTorch number and no ratio to it, the variants chosen
    section = perplexity_from_text(bundle, SHORT, variants=["q4"])
    assert section["pytorch"] is None and section["reference"] == "fp32"
    assert list(section["variants"]) == ["fp32", "q4"]
    assert section["variants"]["q4"]["ratio_vs_pytorch"] is None


def test_compare_and_the_command_line(quantized, tmp_path, capsys):
    bundle = quantized("llama")
    text = tmp_path / "text.txt"
    text.write_text(LONG + "\n", encoding="utf-8")
    report = compare_variants(bundle, variants=["q4"], samples=2, new_tokens=2, layers=False,
                              perplexity=text, perplexity_window=64, reference="pytorch")
    section = report["perplexity"]
    assert section["source"] == str(text) and section["reference"] == "pytorch"
    assert list(section["variants"]) == ["fp32", "q4"] and section["pytorch"]["windows"] == 52

    reports = tmp_path / "reports"
    assert main(["compare", str(bundle.path), "--samples", "2", "--max-new-tokens", "2",
                 "--no-layers", "--perplexity", str(text), "--window", "48", "--stride", "16",
                 "--reports", str(reports)]) == 0
    out = capsys.readouterr().out
    assert f"perplexity on {text} (" in out and "window 48, stride 16" in out
    assert "| engine | perplexity | NLL nats/token | vs fp32 | vs pytorch |" in out
    saved = json.loads((reports / "accuracy.json").read_text())["perplexity"]
    assert saved["window"] == 48 and saved["stride"] == 16 and saved["pytorch"] is None
    assert list(saved["variants"]) == ["fp32", "int8", "q4"]
    q4 = saved["variants"]["q4"]
    markdown = (reports / "accuracy.md").read_text()
    assert "## Perplexity" in markdown and f"| q4 | {q4['perplexity']:.3f} |" in markdown
    assert f"{q4['ratio_vs_fp32']:.4f} | n/a |" in markdown
    page = (reports / "accuracy.html").read_text()
    assert "<h2>Perplexity</h2>" in page and "http" not in page


def test_errors(quantized, tiny_bundle, tmp_path, capsys, monkeypatch):
    bundle = Bundle.load(tiny_bundle("gpt2", "text-generation"))
    good = tmp_path / "good.txt"
    good.write_text(SHORT, encoding="utf-8")
    bert = Bundle.load(tiny_bundle("bert", "text-classification"))
    with pytest.raises(InputError, match="Perplexity is measured on decoder-only models; .* "
                                         "family 'text-encoder'"):
        compare_variants(bert, perplexity=good)
    with pytest.raises(InputError, match="decoder-only"):
        perplexity_from_text(bert, SHORT)

    files = {"empty.txt": b"", "blank.txt": b" \n\t\n",
             "latin1.txt": "café au lait".encode("latin-1"),
             "binary.bin": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    expected = {"empty.txt": r"is empty\. Note", "blank.txt": r"is empty \(only whitespace\)",
                "latin1.txt": r"is not UTF-8 text \(byte 3: invalid continuation byte\)",
                "binary.bin": r"holds NUL bytes .*: it is a binary file",
                "missing.txt": r"missing.txt does not exist"}
    for name, message in expected.items():
        with pytest.raises(InputError, match=message):
            compare_variants(bundle, perplexity=tmp_path / name)
    (tmp_path / "big.txt").write_text("x" * 154)
    monkeypatch.setattr("calibration.perplexity.MAX_TEXT_BYTES", 100)
    with pytest.raises(InputError, match="is 154 bytes, over the limit of 100"):
        compare_variants(bundle, perplexity=tmp_path / "big.txt")
    monkeypatch.undo()

    with pytest.raises(InputError, match=r"tokenizes to 1 token\(s\).*needs at least 2"):
        perplexity_from_text(bundle, "a")
    with pytest.raises(InputError, match="window of 129 tokens is longer than the model's 128 "
                                         "positions .config.json's n_positions."):
        perplexity_from_text(bundle, SHORT, window=129)
    with pytest.raises(InputError, match=r"stride must be from 1 to the window less one \(31\), "
                                         "got 32"):
        perplexity_from_text(bundle, SHORT, window=32, stride=32)
    with pytest.raises(InputError, match="window must be an int of at least 2"):
        perplexity_from_text(bundle, SHORT, window=1)
    with pytest.raises(InputError, match="has no variant 'int9'"):
        perplexity_from_text(bundle, SHORT, variants=["int9"])
    with pytest.raises(InputError, match="shape the perplexity measurement. Note: pass a "
                                         "text file"):
        compare_variants(bundle, perplexity_window=64)

    # on the command line: one line on stderr, exit status 1, before anything runs
    copy = quantized("gpt2")
    assert main(["compare", str(copy.path), "--perplexity", str(tmp_path / "latin1.txt")]) == 1
    assert "is not UTF-8 text" in capsys.readouterr().err
    assert not (copy.path / "reports" / "accuracy.json").exists()
