"""`edgeport bench`: the report has every field with sane values on every family, transformers
runs beside the runtime in the same stages, cold start runs in a fresh process, and bad input
is one clear line. Iteration counts are tiny and nothing here asserts a speed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime.cli import main
from runtime.cli.bench_inputs import photo_like_image, speech_like_signal, texts_of_length
from runtime.cli.timing import STAGES, timed_rounds

QUICK = ["--iterations", "3", "--warmup", "1"]

# (model_type, task, family-specific arguments)
FAMILIES = [
    ("bert", "text-classification", ["--sequence", "8", "24"]),
    ("bert", "feature-extraction", ["--sequence", "12"]),
    ("vit", "image-classification", []),
    ("wav2vec2", "automatic-speech-recognition", ["--seconds", "1"]),
    ("gpt2", "text-generation", ["--sequence", "6", "--max-new-tokens", "3"]),
]


def bench(tmp_path, capsys, bundle, *args) -> tuple[dict, str]:
    """Run `edgeport bench` and return (the JSON report, the Markdown printed)."""
    path = tmp_path / "report.json"
    assert main(["bench", str(bundle), *args, "--json", str(path)]) == 0
    return json.loads(path.read_text()), capsys.readouterr().out


def check_run(run: dict) -> None:
    """Percentiles in order, stages that add up to the total, engine time inside inference."""
    latency = run["latency_ms"]
    assert set(latency) == set(STAGES)
    for stats in latency.values():
        assert 0 <= stats["median"] <= stats["p90"] <= stats["p99"]
    means = {stage: latency[stage]["mean"] for stage in STAGES}
    parts = means["preprocess"] + means["inference"] + means["postprocess"]
    assert parts == pytest.approx(means["total"], rel=1e-6, abs=1e-6)
    assert 0 < means["engine"] <= means["inference"] + 1e-6
    assert run["items_per_s"] > 0


@pytest.mark.parametrize("model_type, task, args", FAMILIES, ids=[f[1] for f in FAMILIES])
def test_report_has_every_field_with_sane_values(model_type, task, args, tiny_bundle, tmp_path,
                                                 capsys):
    bundle = tiny_bundle(model_type, task)
    report, out = bench(tmp_path, capsys, bundle, *QUICK, "--batch", "1", "2",
                        "--cold-starts", "0", *args)
    assert report["task"] == task and report["model_type"] == model_type
    assert report["settings"]["inputs"] == "generated" and report["ratios"] == []
    sequences = report["settings"]["sequences"] or [None]
    assert [(r["batch"], r["sequence"]) for r in report["runs"]] == [
        (batch, sequence) for batch in (1, 2) for sequence in sequences]
    for run in report["runs"]:
        check_run(run)
        assert run["calls"] == 3 and run["backend"] == "fp32"
        if run["sequence"] is not None:
            assert run["tokens"] == run["sequence"]  # generated texts are cut to the length
    (backend,) = report["backends"]
    assert backend["size_bytes"] == (bundle / "onnx" / "model.onnx").stat().st_size
    assert backend["cold_start"] is None
    assert out.startswith(f"### {model_type} {task}") and "| fp32 | 2 |" in out
    if task == "text-generation":  # greedy, exactly --max-new-tokens per prompt
        for run in report["runs"]:
            generation = run["generation"]
            assert generation["new_tokens_per_call"] == 3 * run["batch"]
            first = generation["time_to_first_token_ms"]["median"]
            assert 0 < first <= run["latency_ms"]["total"]["p99"]


def test_against_transformers_with_cold_start(tiny_bundle, tmp_path, capsys):
    bundle = tiny_bundle("bert", "text-classification")
    report, out = bench(tmp_path, capsys, bundle, *QUICK, "--sequence", "8",
                        "--against", "transformers", "--cold-starts", "1")
    ours, theirs = report["runs"]
    assert (ours["backend"], theirs["backend"]) == ("fp32", "transformers")
    assert ours.keys() == theirs.keys() and theirs["tokens"] == ours["tokens"]
    check_run(theirs)
    (ratio,) = report["ratios"]
    assert set(ratio["speedup"]) == set(STAGES)
    assert all(value > 0 for value in ratio["speedup"].values())
    assert ratio["cold_start_speedup"] > 0 and ratio["peak_rss_fraction"] > 0
    for backend in report["backends"]:
        cold = backend["cold_start"]
        assert min(cold["import_s"], cold["load_s"], cold["first_result_s"]) > 0
        assert cold["to_first_result_s"] < cold["process_s"]
        assert cold["peak_rss_bytes"] > 10_000_000
    reference = report["backends"][1]
    assert reference["versions"]["torch"] and reference["name"] == "transformers"
    weights = Path(report["source"]).glob("*.safetensors")
    assert reference["size_bytes"] == sum(path.stat().st_size for path in weights)
    assert "Speed-up over transformers" in out


def test_generation_against_transformers(tiny_bundle, tmp_path, capsys):
    bundle = tiny_bundle("gpt2", "text-generation")
    report, out = bench(tmp_path, capsys, bundle, *QUICK, "--sequence", "6", "--batch", "1",
                        "2", "--max-new-tokens", "3", "--against", "transformers",
                        "--cold-starts", "0")
    for ours, theirs in zip(report["runs"][::2], report["runs"][1::2]):
        assert theirs["backend"] == "transformers"
        # both sides decode the same number of tokens: the work compared is the same
        assert (theirs["generation"]["new_tokens_per_call"]
                == ours["generation"]["new_tokens_per_call"] == 3 * ours["batch"])
    assert all(ratio["tokens_per_s"] > 0 for ratio in report["ratios"])
    assert "tokens/s x" in out


def test_decision_transformer_against_pytorch(tiny_bundle, tmp_path, capsys):
    """transformers has no reinforcement-learning pipeline: its side is the tutorial's
    get_action on the PyTorch model, fed the same generated trajectories (a full context)."""
    from exporter.bench_reference import DecisionTransformerPolicy
    from runtime import pipeline
    from runtime.cli.bench_inputs import trajectory

    bundle = tiny_bundle("decision_transformer", "reinforcement-learning")
    report, out = bench(tmp_path, capsys, bundle, *QUICK, "--batch", "1", "3",
                        "--against", "transformers", "--cold-starts", "1")
    assert [(r["backend"], r["batch"]) for r in report["runs"]] == [
        ("fp32", 1), ("transformers", 1), ("fp32", 3), ("transformers", 3)]
    for run in report["runs"]:
        check_run(run)
    assert report["backends"][1]["cold_start"]["first_result_s"] > 0
    assert "Speed-up over transformers" in out
    # the two sides compute the same actions
    policy = DecisionTransformerPolicy(task="reinforcement-learning",
                                       model=report["source"])
    episodes = [trajectory(11, 3, steps, seed) for seed, steps in enumerate((5, 20, 31))]
    for ours, theirs in zip(pipeline(model=str(bundle))(episodes), policy(episodes)):
        np.testing.assert_allclose(ours["action"], theirs["action"], atol=2e-5)
    assert main(["bench", str(bundle), "--input", "x", "--cold-starts", "0"]) == 1
    assert "generated trajectories" in capsys.readouterr().err


def test_visual_bert_is_timed_with_region_features(tiny_bundle, tmp_path, capsys):
    """VisualBERT reads a detector's region features beside each text: bench gives it 36 of
    them (transformers has no pipeline for it to time against)."""
    bundle = tiny_bundle("visual_bert", "feature-extraction")
    report, _ = bench(tmp_path, capsys, bundle, *QUICK, "--batch", "1", "2", "--sequence", "8",
                      "--cold-starts", "0")
    assert [(r["batch"], r["sequence"]) for r in report["runs"]] == [(1, 8), (2, 8)]
    for run in report["runs"]:
        check_run(run)
    assert main(["bench", str(bundle), "--against", "transformers", "--cold-starts", "0"]) == 1
    assert "no pipeline for VisualBERT" in capsys.readouterr().err


def test_given_inputs(tiny_bundle, tmp_path, capsys):
    bundle = tiny_bundle("bert", "text-classification")
    report, _ = bench(tmp_path, capsys, bundle, *QUICK, "--cold-starts", "0", "--batch", "2",
                      "--input", "a short text", "another, slightly longer text to classify",
                      "third")
    assert report["settings"]["inputs"] == "given" and report["settings"]["sequences"] is None
    (run,) = report["runs"]
    assert run["sequence"] is None and 3 < run["tokens"] < 12


@pytest.mark.parametrize("argv, message", [
    (["/no/such/bundle"], "No bundle at /no/such/bundle"),
    (["{bundle}", "--variants", "fp23"], "Did you mean 'fp32'"),
    (["{bundle}", "--iterations", "0"], "--iterations 0 is out of range"),
    (["{bundle}", "--batch", "100000"], "--batch 100000 is out of range"),
    (["{bundle}", "--sequence", "100000"], "more than the model's 512 positions"),
    (["{bundle}", "--sequence", "1"], "leaves no room for text"),
    (["{bundle}", "--seconds", "2"], "this bundle reads text"),
    (["{bundle}", "--max-new-tokens", "4"], "--max-new-tokens is for generating bundles"),
    (["{bundle}", "--input", "x", "--sequence", "8"], "--input texts are used as given"),
    (["{bundle}", "--json", "{tmp}/no/such/dir/r.json"], "does not exist"),
])
def test_errors_are_one_clear_line(argv, message, tiny_bundle, tmp_path, capsys):
    bundle = tiny_bundle("bert", "text-classification")
    argv = ["bench", *(a.format(bundle=bundle, tmp=tmp_path) for a in argv), "--cold-starts", "0"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "Note:" in err
    assert err.startswith("edgeport bench: error:")


def test_against_a_checkpoint_that_is_gone(tiny_bundle, tmp_path, capsys):
    bundle = shutil.copytree(tiny_bundle("bert", "text-classification"), tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["source"]["checkpoint"] = str(tmp_path / "gone")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert main(["bench", str(bundle), "--against", "transformers", "--cold-starts", "0"]) == 1
    err = capsys.readouterr().err
    assert "does not exist on this machine any more" in err and "Traceback" not in err


# --- the parts --------------------------------------------------------------------------------
def test_generated_texts_have_the_requested_token_count(tiny_bundle):
    from runtime.text.tokenizer import TextTokenizer

    for model_type, task in [("bert", "text-classification"), ("gpt2", "text-generation")]:
        tokenizer = TextTokenizer.from_dir(tiny_bundle(model_type, task))
        for tokens in (3, 17, 128, 300):
            texts = texts_of_length(tokenizer, tokens, count=3)
            assert len(set(texts)) == 3  # a batch of different texts
            assert [len(e.ids) for e in tokenizer.encode_batch(texts)] == [tokens] * 3
        assert texts == texts_of_length(tokenizer, 300, count=3)  # deterministic


def test_generated_images_and_audio_are_deterministic():
    image = photo_like_image(48, 64, seed=1)
    assert (image.mode, image.size) == ("RGB", (64, 48))
    assert np.array_equal(np.asarray(image), np.asarray(photo_like_image(48, 64, seed=1)))
    assert not np.array_equal(np.asarray(image), np.asarray(photo_like_image(48, 64, seed=2)))
    signal = speech_like_signal(0.5, 16000, seed=0)
    assert signal.dtype == np.float32 and signal.shape == (8000,)
    assert 0.01 < np.abs(signal).max() <= 1.0
    assert np.array_equal(signal, speech_like_signal(0.5, 16000, seed=0))


def test_timed_rounds_gives_each_callable_its_iterations():
    seen = []

    def call(name):
        def run(item):
            seen.append((name, item))
            return item
        return run

    samples = timed_rounds({"a": call("a"), "b": call("b")}, [1, 2], iterations=7, rounds=3)
    assert {name: len(values) for name, values in samples.items()} == {"a": 7, "b": 7}
    assert samples["a"] == [1, 2, 1, 2, 1, 2, 1]  # cycling through the inputs
    # each of the 3 blocks per callable starts with an untimed pass over both inputs
    assert len(seen) == 2 * (7 + 3 * 2)
    assert [name for name, _ in seen[:11]] == ["a"] * 5 + ["b"] * 6  # round 2 starts with b


def test_workloads_of_tasks_that_take_more_than_a_text(runtime_pipeline):
    from runtime.cli.bench_inputs import CANDIDATE_LABELS, QUESTION, workloads

    fill = runtime_pipeline("bert", "fill-mask")
    (cell,) = workloads(fill, "fill-mask", batches=[2], sequences=[20], seconds=None,
                        max_new_tokens=None)
    assert all(text.count(fill.tokenizer.mask_token) == 1 for text in cell.batches[0])
    assert cell.tokens == 20
    args, kwargs = cell.arguments(cell.batches[0], True)
    assert kwargs == {"batch_size": 2} and len(fill(*args, **kwargs)) == 2

    answer = runtime_pipeline("bert", "question-answering")
    (cell,) = workloads(answer, "question-answering", batches=[2], sequences=[40], seconds=None,
                        max_new_tokens=None)
    args, kwargs = cell.arguments(cell.batches[0], False)
    assert args == () and kwargs["question"] == [QUESTION, QUESTION]
    assert len(answer(*args, **kwargs)) == 2
    assert 38 <= cell.tokens <= 42  # question and context as one pair

    labels = runtime_pipeline("clip", "zero-shot-image-classification")
    (cell,) = workloads(labels, "zero-shot-image-classification", batches=[1], sequences=None,
                        seconds=None, max_new_tokens=None)
    args, kwargs = cell.arguments(cell.batches[0], False)
    assert kwargs == {"candidate_labels": CANDIDATE_LABELS}
    assert {r["label"] for r in labels(*args, **kwargs)} == set(CANDIDATE_LABELS)


def test_zero_shot_object_detection_against_transformers(tiny_bundle, tmp_path, capsys,
                                                         runtime_pipeline, reference_pipeline):
    """Both sides get the generated photos with the same candidate labels, one list per image
    in a batch (transformers pairs a list of images with a list of label lists)."""
    from runtime.cli.bench_inputs import CANDIDATE_LABELS, workloads

    task = "zero-shot-object-detection"
    report, out = bench(tmp_path, capsys, tiny_bundle("owlvit", task), *QUICK, "--batch", "1",
                        "2", "--against", "transformers", "--cold-starts", "0")
    assert [(r["backend"], r["batch"]) for r in report["runs"]] == [
        ("fp32", 1), ("transformers", 1), ("fp32", 2), ("transformers", 2)]
    for run in report["runs"]:
        check_run(run)
    assert "Speed-up over transformers" in out
    detect = runtime_pipeline("owlvit", task)
    (cell,) = workloads(detect, task, batches=[2], sequences=None, seconds=None,
                        max_new_tokens=None)
    args, kwargs = cell.arguments(cell.batches[0], True)
    assert kwargs == {"candidate_labels": [CANDIDATE_LABELS] * 2, "batch_size": 2}
    found = detect(*args, **kwargs)
    assert len(found) == 2 and found[0]
    expected = reference_pipeline("owlvit", task)(*args, **kwargs)
    assert [[(d["label"], d["box"]) for d in image] for image in found] == [
        [(d["label"], d["box"]) for d in image] for image in expected]
