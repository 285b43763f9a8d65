"""compare and the accuracy-aware --max-drop loop measure a variant on a backend and precision:
on OpenVINO at f32 a variant's task metric is ONNX Runtime's; at bf16 the report says bf16 (the
precision OpenVINO really ran at) and measures what bf16 costs ("fp32 at bf16"), against the
fp32 reference on ONNX Runtime; a static-int8 (QDQ) variant is measured as OpenVINO runs it;
the refusals come before any work. On tiny bundles and the real all-MiniLM-L6-v2, with the real
OpenVINO on this machine's CPU. Skipped only where openvino cannot be imported."""

from __future__ import annotations

import json
import re
import shutil

import pytest

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")

from noisy_variants import noisy_variant  # noqa: E402

from calibration.budget import variant_within_budget  # noqa: E402
from calibration.compare import compare_variants  # noqa: E402
from calibration.report import markdown_report, summary_table  # noqa: E402
from runtime import Bundle, InputError  # noqa: E402
from runtime.cli import main  # noqa: E402

CALIBRATION = ["a fine day", "not good at all", "the cat sat on the mat", "what a lovely film",
               "terrible service and cold food", "the train was late again", "I love it",
               "meh, it was fine I guess"] * 2
# model_type, task, noise on the classifier's weight (in weight std): large enough to flip
# labels of the tiny random models, which otherwise answer nearly everything alike
CASES = {"bert-text-classification": ("bert", "text-classification", 10.0),
         "vit-image-classification": ("vit", "image-classification", 10.0)}


def _cpu_has_bf16() -> bool:
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _copy(tiny_bundle, tmp_path, model_type, task) -> Bundle:
    # Session bundles are shared by other tests: variants and compiled models go into a copy.
    return Bundle.load(shutil.copytree(tiny_bundle(model_type, task), tmp_path / "bundle"))


def _noisy(bundle: Bundle, scale: float) -> Bundle:
    """A "noisy" variant: seeded noise on the classifier's weight (the last Gemm or MatMul
    that reads a weight), a float graph both backends run at f32."""
    return noisy_variant(bundle, scale, ops=("Gemm", "MatMul"), last=True)


@pytest.fixture
def data_for(image_folder, tmp_path):
    def make(task):
        if task == "image-classification":
            return image_folder
        path = tmp_path / "texts.txt"
        path.write_text("\n".join(dict.fromkeys(CALIBRATION)))
        return path
    return make


@pytest.mark.parametrize("case", CASES)
def test_openvino_f32_measures_what_onnxruntime_measures(case, tiny_bundle, tmp_path, data_for):
    model_type, task, scale = CASES[case]
    bundle = _noisy(_copy(tiny_bundle, tmp_path, model_type, task), scale)
    data = data_for(task)
    on_ort = compare_variants(bundle, data, variants=["noisy"], samples=24, layers=False)
    on_ov = compare_variants(bundle, data, variants=["noisy", "fp32"], samples=24,
                             layers=False, backend="openvino", precision="f32")
    ort, ovn = on_ort["variants"]["noisy"], on_ov["variants"]["noisy"]
    assert ort["task"]["metric"] == ovn["task"]["metric"] == "top1_agreement"
    assert ort["task"]["value"] < 1.0  # the noise changes labels: the metric can tell
    assert abs(ort["task"]["value"] - ovn["task"]["value"]) <= 1e-4
    assert ort["task"]["flips"] == ovn["task"]["flips"]
    assert abs(ort["cosine"] - ovn["cosine"]) <= 1e-4
    # fp32 on OpenVINO at f32 is the reference, to float noise
    fp32 = on_ov["variants"]["fp32"]
    assert fp32["task"]["value"] == 1.0 and fp32["cosine"] >= 1 - 1e-6
    assert ort["measured_on"] == {"backend": "onnxruntime", "device": "cpu", "precision": None}
    where = ovn["measured_on"]
    assert (where["backend"], where["device"], where["precision"]) == ("openvino", "cpu", "f32")
    assert where["precision_default"] is False
    assert where["device_name"] == ov.Core().get_property("CPU", "FULL_DEVICE_NAME")
    assert on_ov["measured_on"] == {"backend": "openvino", "device": "cpu", "precision": "f32"}
    assert on_ov["versions"]["openvino"] == where["openvino"]
    assert "openvino" not in on_ort["versions"]
    # the reference stays fp32 on ONNX Runtime, and the report says where each side ran
    assert on_ov["reference"]["name"] == "fp32"
    table = summary_table(on_ov)
    assert table.splitlines()[0].endswith("| runs on |")
    assert "| fp32 (reference) |" in table and "onnxruntime cpu |" in table
    assert re.search(r"\| noisy \| noise \|.*\| openvino cpu f32 \|", table), table
    assert "- measured on: reference on onnxruntime cpu; variants on openvino cpu f32 (" \
        in markdown_report(on_ov)


@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no bf16")
def test_fp32_at_bf16_is_recorded_as_bf16_and_measured(tiny_bundle, tmp_path, data_for):
    """"fp32 at bf16": the fp32 graph run by OpenVINO at its default precision (bf16 on this
    CPU) against the fp32 reference on ONNX Runtime; what bf16 alone costs."""
    bundle = _copy(tiny_bundle, tmp_path, "bert", "text-classification")
    data = data_for("text-classification")
    by_default = compare_variants(bundle, data, samples=16, layers=False, backend="openvino")
    assert list(by_default["variants"]) == ["fp32"]  # off the reference's engine, fp32 counts
    picked = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    where = by_default["variants"]["fp32"]["measured_on"]
    assert picked == "bf16" and where["precision"] == "bf16" and where["precision_default"]
    assert by_default["measured_on"]["precision"] is None  # no hint was given
    hinted = compare_variants(bundle, data, variants=["fp32"], samples=16, layers=False,
                              backend="openvino", precision="bf16")
    fp32 = hinted["variants"]["fp32"]
    assert fp32["measured_on"]["precision"] == "bf16"
    assert fp32["measured_on"]["precision_default"] is False
    # bf16 really ran: the logits differ measurably, and stay close (measured here: cosine
    # 0.99994, SQNR 40 dB on the tiny random classifier)
    assert 0.999 <= fp32["cosine"] < 1 - 1e-7, fp32["cosine"]
    assert fp32["sqnr_db"] is not None and fp32["sqnr_db"] < 80
    assert "openvino cpu bf16" in summary_table(hinted)
    assert "openvino cpu bf16 (default)" in summary_table(by_default)


@pytest.fixture
def quantized_bert(quantized_tiny_bert):
    return quantized_tiny_bert


def test_qdq_variant_is_measured_on_openvino(quantized_bert, tmp_path):
    bundle = Bundle.load(shutil.copytree(quantized_bert, tmp_path / "bundle"))
    on_ort = compare_variants(bundle, variants=["qdq"], samples=16, layers=False)
    report = compare_variants(bundle, samples=16, backend="openvino", precision="f32", top=5)
    # the default list leaves out the variant OpenVINO refuses, and says why
    assert list(report["variants"]) == ["fp32", "qdq"]
    assert list(report["skipped"]) == ["int8"]
    assert "does not run on OpenVINO" in report["skipped"]["int8"]
    qdq = report["variants"]["qdq"]
    assert qdq["measured_on"]["backend"] == "openvino" and qdq["recipe"]["name"] == "static-int8"
    # OpenVINO runs the QDQ graph in int8 (its own kernels): close to ONNX Runtime's QDQ
    assert abs(qdq["cosine"] - on_ort["variants"]["qdq"]["cosine"]) <= 1e-3
    assert qdq["task"]["value"] == pytest.approx(on_ort["variants"]["qdq"]["task"]["value"],
                                                 abs=1 / 16)
    assert qdq["cosine"] < 1 - 1e-6  # quantization error is measured, not hidden
    # where the error enters is located on ONNX Runtime, and the report says so
    assert qdq["layers"]["backend"] == "onnxruntime" and qdq["layers"]["top"]
    assert report["variants"]["fp32"]["layers"] is None
    text = markdown_report(report)
    assert "the graph run on ONNX Runtime)" in text and "not run there: int8" in text


def test_cli_compare_on_openvino(quantized_bert, tmp_path, capsys):
    bundle = shutil.copytree(quantized_bert, tmp_path / "bundle")
    assert main(["compare", str(bundle), "--variants", "fp32", "qdq", "--backend", "openvino",
                 "--precision", "f32", "--device", "cpu", "--samples", "6",
                 "--no-layers"]) == 0
    out = capsys.readouterr().out
    assert "reference fp32; reference on onnxruntime cpu; variants on openvino cpu f32" in out
    assert re.search(r"\| qdq \| static-int8 \|.*\| openvino cpu f32 \|", out), out
    report = json.loads((bundle / "reports" / "accuracy.json").read_text())
    assert report["variants"]["qdq"]["measured_on"]["precision"] == "f32"
    # the manifest's accuracy summary says where it was measured
    accuracy = Bundle.load(bundle).variants["qdq"]["accuracy"]
    assert accuracy["measured_on"]["backend"] == "openvino"
    assert accuracy["measured_on"]["precision"] == "f32"


@pytest.mark.parametrize("arguments, message", [
    (["compare", "BUNDLE", "--variants", "int8", "--backend", "openvino"],
     r"The variant 'int8' \(dynamic-int8\) does not run on OpenVINO: .*Note: for int8 on "
     "OpenVINO make a static-int8 variant"),
    (["compare", "BUNDLE", "--variants", "qdq", "--precision", "bf16"],
     "precision='bf16' \\(--precision\\) is OpenVINO's precision hint; on onnxruntime the "
     "variant's graph sets the precision. Note: add --backend openvino"),
    (["compare", "BUNDLE", "--variants", "fp32"],
     "fp32 is the reference; .*or measure fp32 on another backend or precision"),
    (["compare", "BUNDLE", "--backend", "openvino", "--device", "tpu"],
     "Unknown OpenVINO device 'tpu'"),
    (["quantize", "BUNDLE", "--recipe", "dynamic-int8", "--name", "new", "--max-drop",
      "top1=0.1", "--backend", "openvino"],
     r"A dynamic-int8 variant does not run on OpenVINO: .*make a static-int8 variant"),
    (["quantize", "BUNDLE", "--recipe", "static-int8", "--name", "new", "--max-drop",
      "top1=0.1", "--precision", "bf16"], "--precision\\) is OpenVINO's precision hint"),
    (["quantize", "BUNDLE", "--recipe", "dynamic-int8", "--name", "new", "--backend",
      "openvino"], "--backend say where --max-drop measures the variant"),
])
def test_cli_errors_come_first_and_are_one_line(arguments, message, quantized_bert, capsys):
    def state():
        return (json.loads((quantized_bert / "manifest.json").read_text()),
                sorted(p.relative_to(quantized_bert) for p in quantized_bert.rglob("*")))

    before = state()
    arguments = [str(quantized_bert) if a == "BUNDLE" else a for a in arguments]
    assert main(arguments) == 1
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1, error
    assert re.search(message, error), error
    # refused before any work: no variant made, no report, summary or compiled model written
    assert state() == before


def test_unknown_backend_is_named(quantized_bert):
    with pytest.raises(InputError, match="Unknown backend 'openvnio'. Did you mean 'openvino'"):
        compare_variants(quantized_bert, variants=["qdq"], backend="openvnio")
    with pytest.raises(InputError, match="Unknown backend 'openvnio'"):
        variant_within_budget(quantized_bert, "static-int8", "top1=0.1", backend="openvnio")
    with pytest.raises(SystemExit) as exit_info:  # argparse names the choices
        main(["compare", str(quantized_bert), "--backend", "openvnio"])
    assert exit_info.value.code == 2


def test_max_drop_measured_on_openvino_records_the_backend(quantized_bert, tmp_path, capsys):
    bundle = shutil.copytree(quantized_bert, tmp_path / "bundle")
    calibration = quantized_bert.parent / "calibration.txt"
    precision = "bf16" if _cpu_has_bf16() else "f32"
    assert main(["quantize", str(bundle), "--recipe", "static-int8", "--name", "budgeted",
                 "--calibration", str(calibration), "--samples", "16", "--max-drop",
                 "top1=0.2", "--backend", "openvino", "--precision", precision]) == 0
    out = capsys.readouterr().out
    assert f"within 0.2 on openvino cpu {precision} with" in out
    accuracy = Bundle.load(bundle).variants["budgeted"]["accuracy"]
    assert accuracy["measured_on"]["backend"] == "openvino"
    assert accuracy["measured_on"]["precision"] == precision
    assert accuracy["accuracy_aware"]["layers_backend"] == "onnxruntime"
    # the recorded value is what OpenVINO gives: measured again there, independently
    again = compare_variants(bundle, calibration, variants=["budgeted"], samples=16,
                             layers=False, backend="openvino", precision=precision)
    assert again["variants"]["budgeted"]["task"]["value"] == pytest.approx(accuracy["value"])


def test_dynamic_int8_budget_on_openvino_is_refused_before_quantizing(quantized_bert,
                                                                      tmp_path):
    bundle = Bundle.load(shutil.copytree(quantized_bert, tmp_path / "bundle"))
    with pytest.raises(InputError, match=r"A dynamic-int8 variant does not run on OpenVINO: "
                                         r".*105 ms.*backend='onnxruntime'"):
        variant_within_budget(bundle, "dynamic-int8", "top1=0.1", name="new",
                              backend="openvino")
    assert "new" not in Bundle.load(bundle.path).variants


def test_real_minilm_fp32_at_bf16(minilm_bundle, tmp_path):
    """The real all-MiniLM-L6-v2, "fp32" run by OpenVINO against fp32 on ONNX Runtime: at f32
    the sentence embeddings are the reference's; at bf16 they move measurably and keep a
    minimum cosine of at least 0.999 over the sentences (measured here, AMD EPYC Zen 4 with
    avx512_bf16, OpenVINO 2026.4.1, 58 sentences: min 0.99994, mean 0.99998; f32: min
    1 - 1.5e-12)."""
    from sentences import SENTENCES

    bundle = Bundle.load(shutil.copytree(minilm_bundle, tmp_path / "minilm"))
    data = tmp_path / "sentences.txt"
    data.write_text("\n".join(SENTENCES))
    f32 = compare_variants(bundle, data, variants=["fp32"], samples=len(SENTENCES),
                           layers=False, backend="openvino", precision="f32")
    task = f32["variants"]["fp32"]["task"]
    assert task["metric"] == "embedding_cosine_min" and task["value"] >= 1 - 1e-6
    if not _cpu_has_bf16():
        pytest.skip("this CPU has no bf16")
    bf16 = compare_variants(bundle, data, variants=["fp32"], samples=len(SENTENCES),
                            layers=False, backend="openvino", precision="bf16")
    variant = bf16["variants"]["fp32"]
    assert variant["measured_on"]["precision"] == "bf16"
    assert bf16["data"]["samples"] >= 50
    assert 0.999 <= variant["task"]["value"] < 1 - 1e-6, (variant["task"]["value"],
                                                          variant["task"]["mean"])


def test_generation_is_measured_on_openvino(tiny_bundle, tmp_path):
    """A generative bundle's variants generate on OpenVINO (the merged decoder compiled per
    branch): at f32 greedy generation gives the reference's tokens, and the precision recorded
    is the one the branches were compiled at."""
    bundle = _copy(tiny_bundle, tmp_path, "gpt2", "text-generation")
    report = compare_variants(bundle, variants=["fp32"], samples=6, new_tokens=5, layers=False,
                              backend="openvino", precision="f32")
    fp32 = report["variants"]["fp32"]
    assert fp32["task"]["metric"] == "token_agreement" and fp32["task"]["value"] == 1.0
    assert fp32["cosine"] >= 1 - 1e-6
    assert fp32["measured_on"]["backend"] == "openvino"
    assert fp32["measured_on"]["precision"] == "f32"
    assert report["versions"]["openvino"] == fp32["measured_on"]["openvino"]


def test_perplexity_is_measured_on_openvino(tiny_bundle, tmp_path, capsys):
    """Perplexity on a backend and precision: fp32 on ONNX Runtime is measured as the base
    (``reference_fp32``), fp32 and int4 on OpenVINO are variants against it (at f32 equal to
    it, at bf16 within a percent on the tiny model), and dynamic-int8 is left out with the
    reason; on the command line the table names where each row ran."""
    from sentences import SENTENCES

    from calibration.perplexity import perplexity_from_text
    from calibration.quantize import variant_from_bundle

    bundle = _copy(tiny_bundle, tmp_path, "llama", "text-generation")
    variant_from_bundle(bundle.path, "dynamic-int8")
    variant_from_bundle(bundle.path, "int4")
    text = "\n".join(SENTENCES[:20])
    on_ort = perplexity_from_text(bundle.path, text, window=64)
    f32 = perplexity_from_text(bundle.path, text, window=64, backend="openvino", precision="f32")
    assert list(f32["variants"]) == ["fp32", "q4"] and list(f32["skipped"]) == ["int8"]
    assert "dynamic-int8) does not run on OpenVINO" in f32["skipped"]["int8"]
    assert f32["reference_fp32"]["perplexity"] == on_ort["variants"]["fp32"]["perplexity"]
    for name in ("fp32", "q4"):
        measured = f32["variants"][name]
        where = measured["measured_on"]
        assert where["backend"] == "openvino" and where["precision"] == "f32"
        assert measured["tokens"] == on_ort["variants"][name]["tokens"]
        # OpenVINO's CPU quantizes the activations of int4 MatMuls to int8 (in groups of 32 by
        # default), as ONNX Runtime's MatMulNBits does only at accuracy_level 4: measured 0.2%
        # apart on q4, the same to 1e-7 with DYNAMIC_QUANTIZATION_GROUP_SIZE 0
        quantizes = name == "q4" and where["dynamic_quantization_group_size"] > 0
        assert measured["perplexity"] == pytest.approx(on_ort["variants"][name]["perplexity"],
                                                       rel=1e-2 if quantizes else 1e-5)
        assert measured["ratio_vs_fp32"] == pytest.approx(
            measured["perplexity"] / f32["reference_fp32"]["perplexity"])
    assert f32["variants"]["fp32"]["ratio_vs_fp32"] == pytest.approx(1, abs=1e-5)
    with pytest.raises(InputError, match=r"dynamic-int8\) does not run on OpenVINO"):
        perplexity_from_text(bundle.path, text, variants=["int8"], backend="openvino")

    words = tmp_path / "text.txt"
    words.write_text(text, encoding="utf-8")
    reports = tmp_path / "reports"
    precision = "bf16" if _cpu_has_bf16() else "f32"
    assert main(["compare", str(bundle.path), "--variants", "fp32", "--samples", "2",
                 "--max-new-tokens", "2", "--no-layers", "--perplexity", str(words),
                 "--window", "64", "--backend", "openvino", "--precision", precision,
                 "--reports", str(reports)]) == 0
    out = capsys.readouterr().out
    saved = json.loads((reports / "accuracy.json").read_text())["perplexity"]
    fp32 = saved["variants"]["fp32"]
    assert fp32["measured_on"]["precision"] == precision
    assert 0.99 < fp32["ratio_vs_fp32"] < 1.01
    assert "| fp32 (onnxruntime cpu) |" in out
    assert f"| fp32 (openvino cpu {precision}) | {fp32['perplexity']:.3f} |" in out
