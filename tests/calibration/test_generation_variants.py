"""Recipes on generative bundles: every recipe makes every graph of a decoder-only (GPT-2) and an
encoder-decoder (BART, T5) bundle, a merged decoder's If branches included, and the variant
generates through ``runtime.pipeline(..., variant=NAME)`` close to fp32.

Each variant is checked two ways on PROMPTS, greedy, NEW_TOKENS new tokens:

- teacher-forced: fp32 and the variant are fed fp32's own tokens, and at every step the
  variant's logits must be close to fp32's (the minimum cosine per step) and keep fp32's
  top-1 wherever it leads the runner-up by more than 10% of the logits' range;
- free-running: the variant generates on its own; the share of fp32's tokens it reproduces
  before its first divergence (``metrics.token_agreement``'s prefix).

Measured with onnxruntime 1.31 on an AVX-512 VNNI CPU (tiny random models; each bound leaves
room for other CPUs' kernels). Per-step cosine min / free-running token agreement:

    recipe        GPT-2              BART               T5
    optimize      1.00000 / 1.000    1.00000 / 1.000    (refused: CPU kernels missing)
    fp16          1.00000 / 1.000    1.00000 / 1.000    1.00000 / 1.000
    dynamic-int8  0.99933 / 0.931    0.99930 / 1.000    0.99991 / 1.000 (not run here)
    static-int8   0.99407 / 0.806    0.99266 / 0.597    0.99965 / 1.000
    int4          0.96221 / 0.208    0.94804 / 0.306    0.98449 / 1.000 (not run here)
    int8-weights  0.99969 / 1.000    0.99953 / 0.667    (not run here)

Every recipe kept fp32's top-1 at every decisive step (fp32's margin > 10% of the range). The
tiny random models' logits are nearly tied elsewhere, so a small error flips a greedy pick and
the text goes elsewhere from there: free-running agreement is the coarse measure here, the
teacher-forced one the precise. (The tiny T5 generates <pad> throughout, so its tokens agree
trivially; its logits are checked all the same.)
"""

from __future__ import annotations

import collections
import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from sentences import SENTENCES

from calibration.branches import branch_feeds, merged_branches, merged_recipe
from calibration.metrics import token_agreement
from calibration.quantize import variant_from_bundle
from calibration.recipes import RECIPES
from runtime import Bundle, InputError, pipeline
from runtime.cli import main
from runtime.generation import OnnxGenerationModel

PROMPTS = SENTENCES[:6]
CALIBRATION = SENTENCES[20:28]
NEW_TOKENS = 12
SUFFIX = {"dynamic-int8": "int8", "static-int8": "qdq", "fp16": "fp16", "int4": "q4",
          "int8-weights": "q8", "optimize": "opt"}
MODELS = {"gpt2": "text-generation", "bart": "text2text-generation",
          "t5": "text2text-generation"}
# recipe -> (min per-step cosine, min free-running token agreement)
BOUNDS = {
    "optimize": (0.99999, 1.0),
    "fp16": (0.9999, 0.9),
    "dynamic-int8": (0.99, 0.6),
    "static-int8": (0.95, 0.3),
    "int4": (0.85, 0.1),
    "int8-weights": (0.995, 0.3),
}
CASES = [(model, recipe) for model in ("gpt2", "bart") for recipe in RECIPES
         if not RECIPES[recipe].wants_checkpoint] + [  # llm: tests/calibration/test_llm_recipe.py
    ("t5", recipe) for recipe in ("fp16", "static-int8")]


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def made(tiny_bundle, tmp_path_factory):
    """made(model_type) -> a private copy of the tiny bundle holding the variants of CASES
    (each made once for the module) and the sha256 of its fp32 files before."""
    cache = {}

    def make(model_type: str):
        if model_type not in cache:
            directory = tmp_path_factory.mktemp(f"gen-{model_type}")
            path = shutil.copytree(tiny_bundle(model_type, MODELS[model_type]),
                                   directory / "bundle")
            fp32 = {f: _sha(path / f) for f in Bundle.load(path).variants["fp32"]["files"]
                    .values()}
            calibration = directory / "texts.txt"
            calibration.write_text("\n".join(CALIBRATION) + "\n")
            for model, recipe in CASES:
                if model == model_type:
                    needs = RECIPES[recipe].needs_calibration
                    variant_from_bundle(path, recipe, calibration=calibration if needs else None)
            cache[model_type] = path, fp32
        return cache[model_type]

    return make


def _greedy(pipe, text: str) -> np.ndarray:
    result = pipe(text, max_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1,
                  return_tensors=True)[0]
    return np.asarray(next(v for k, v in result.items() if k.endswith("_token_ids")))


def _teacher_forced(model: OnnxGenerationModel, ids: np.ndarray, sequence: np.ndarray
                    ) -> list[np.ndarray]:
    """The logits of every step along ``sequence`` (fp32's greedy output)."""
    state = model.begin(ids, np.ones_like(ids))
    start = 1 if model.is_encoder_decoder else ids.shape[1]
    logits = []
    for end in range(start, len(sequence)):
        step, state = model.next_logits(state, sequence[None, :end])
        logits.append(step[0])
    return logits


def _measure(path: Path, variant: str) -> dict:
    bundle = Bundle.load(path)
    task = bundle.task
    reference, candidate = pipeline(task, model=path), pipeline(task, model=path, variant=variant)
    fp32, model = OnnxGenerationModel.from_bundle(bundle), OnnxGenerationModel.from_bundle(
        bundle, variant)
    cosines, decisive, ours, theirs = [], [], [], []
    for text in PROMPTS:
        ids = np.array([reference.tokenizer.encode_batch([(reference.prefix or "") + text])[0]
                        .ids])
        sequence, generated = _greedy(reference, text), _greedy(candidate, text)
        start = 1 if fp32.is_encoder_decoder else ids.shape[1]
        theirs.append(sequence[start:].tolist())
        ours.append(generated[start:].tolist())
        for a, b in zip(_teacher_forced(fp32, ids, sequence),
                        _teacher_forced(model, ids, sequence)):
            assert b.dtype == np.float32 and np.isfinite(b).all()
            cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
            top, second = np.sort(a)[-2:][::-1]
            if top - second > 0.1 * np.ptp(a):
                decisive.append(a.argmax() == b.argmax())
    return {"cosine": min(cosines), "decisive": float(np.mean(decisive)),
            "steps": len(cosines), "agreement": token_agreement(theirs, ours)["prefix"]}


# --- every recipe, every graph ------------------------------------------------------------------

@pytest.mark.parametrize("model_type, recipe", CASES)
def test_recipe_variant_generates_close_to_fp32(model_type, recipe, made):
    path, fp32 = made(model_type)
    bundle = Bundle.load(path)
    name = SUFFIX[recipe]
    info = bundle.variants[name]
    # every graph, under the graph's own name with the Transformers.js-style suffix
    assert info["files"] == {graph: f"onnx/{'model' if graph == 'model' else graph}_{name}.onnx"
                             for graph in bundle.graphs}
    assert all(f in bundle.manifest["checksums"] for f in info["files"].values())
    assert {f: _sha(path / f) for f in fp32} == fp32  # fp32 untouched
    assert info["recipe"]["name"] == recipe
    if RECIPES[recipe].needs_calibration:
        feeds = info["recipe"]["calibration"]["feeds"]
        assert info["recipe"]["calibration"]["samples"] == len(CALIBRATION)
        # the decoder at the prompt and at cached steps 1, 2, 4 and 8 of each text
        assert feeds[list(bundle.graphs)[-1]] == 5 * len(CALIBRATION)

    measured = _measure(path, name)
    cosine, agreement = BOUNDS[recipe]
    assert measured["cosine"] >= cosine, measured
    assert measured["decisive"] == 1.0, measured
    assert measured["agreement"] >= agreement, measured


@pytest.mark.parametrize("model_type", ["gpt2", "bart"])
def test_row_scaled_int8_generates_close_to_fp32(model_type, made):
    """row_scaling on a decoder with past (GPT-2's Conv1D Gemms made MatMuls first) and an
    encoder-decoder, a merged decoder's branches included."""
    path, _ = made(model_type)
    name = variant_from_bundle(path, "dynamic-int8", name="int8-rows", row_scaling=True)
    record = Bundle.load(path).variants[name]["recipe"]
    if model_type == "gpt2":  # 2 layers of 4 linear layers, and the LM head
        assert record["options"]["row_scaled_inputs"] == 9, record
    else:
        graphs = record["graphs"]
        counts = [graphs["encoder_model"]["row_scaled_inputs"]] + [
            b["row_scaled_inputs"] for b in graphs["decoder_model_merged"]["branches"].values()]
        assert len(counts) == 3 and min(counts) > 0, record
    measured = _measure(path, name)
    cosine, agreement = BOUNDS["dynamic-int8"]
    assert measured["cosine"] >= cosine, measured
    assert measured["decisive"] == 1.0, measured
    assert measured["agreement"] >= agreement, measured


@pytest.mark.parametrize("recipe, mark", [
    ("dynamic-int8", "MatMulInteger"), ("static-int8", "QuantizeLinear"),
    ("int4", "MatMulNBits"), ("int8-weights", "MatMulNBits"), ("fp16", "float16"),
    ("optimize", "BiasGelu")])
def test_both_branches_of_the_merged_decoder_are_made(recipe, mark, made):
    """The merged decoder stays one If on use_cache_branch; the recipe reached into both of
    its branches, and the weights they share are kept once, in the outer graph."""
    path, _ = made("bart")
    model = onnx.load(str(path / f"onnx/decoder_model_merged_{SUFFIX[recipe]}.onnx"))
    assert [n.op_type for n in model.graph.node] == ["If"]
    assert model.graph.node[0].input == ["use_cache_branch"]
    assert [i.name for i in model.graph.input] == [
        i.name for i in onnx.load(str(path / "onnx/decoder_model_merged.onnx")).graph.input]
    branches = {a.name: a.g for a in model.graph.node[0].attribute}
    assert set(branches) == {"then_branch", "else_branch"}
    for branch in branches.values():
        if mark == "float16":
            assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in
                       [*model.graph.initializer, *branch.initializer])
        else:
            assert mark in collections.Counter(n.op_type for n in branch.node)
        outer = {t.name for t in model.graph.initializer}
        assert not outer & {t.name for t in branch.initializer}
    if recipe in ("dynamic-int8", "int4"):  # quantized weights are the same in both branches
        sizes = [sum(t.ByteSize() for t in b.initializer) for b in branches.values()]
        assert max(sizes) < 0.2 * sum(t.ByteSize() for t in model.graph.initializer)
    record = Bundle.load(path).variants[SUFFIX[recipe]]["recipe"]
    if recipe == "int4":  # each branch's own facts are recorded
        made_here = record["graphs"]["decoder_model_merged"]["branches"]
        assert set(made_here) == {"no_past", "with_past"}
        assert all(b["quantized_matmuls"] > 0 for b in made_here.values())


def test_int4_takes_gpt2s_conv1d_gemms(made):
    """GPT-2's linear layers export as Gemm (Conv1D); int4 makes them MatMulNBits too."""
    path, _ = made("gpt2")
    fp32 = collections.Counter(n.op_type for n in onnx.load(str(path / "onnx/model.onnx"))
                               .graph.node)
    ops = collections.Counter(n.op_type for n in onnx.load(str(path / "onnx/model_q4.onnx"))
                              .graph.node)
    options = Bundle.load(path).variants["q4"]["recipe"]["options"]
    assert options["gemms_as_matmuls"] == fp32["Gemm"] > 0 and "Gemm" not in ops
    assert ops["MatMulNBits"] == options["quantized_matmuls"] == fp32["Gemm"] + 1  # + LM head


def test_pegasus_takes_the_bart_fusions(tiny_bundle, tmp_path):
    path = shutil.copytree(tiny_bundle("pegasus", "summarization"), tmp_path / "pegasus")
    variant_from_bundle(path, "optimize")
    record = Bundle.load(path).variants["opt"]["recipe"]
    assert record["options"]["optimizer_model_type"] == "bart"
    assert record["graphs"]["encoder_model"]["fused"]
    measured = _measure(path, "opt")
    assert measured["cosine"] >= BOUNDS["optimize"][0] and measured["agreement"] == 1.0


def test_t5_optimize_is_refused_with_the_reason(made):
    path, _ = made("t5")
    with pytest.raises(InputError, match=r"t5 fusions turn 't5' graphs into "
                                         r"RelativePositionBias nodes, which its CPU provider "
                                         r"cannot run.*Note: on a CPU use dynamic-int8"):
        variant_from_bundle(path, "optimize")
    assert "opt" not in Bundle.load(path).variants


# --- some graphs only ---------------------------------------------------------------------------

def test_a_variant_of_some_graphs_shares_the_others(tiny_bundle, tmp_path, capsys):
    path = shutil.copytree(tiny_bundle("bart", "text2text-generation"), tmp_path / "bart")
    encoder = path / "onnx/encoder_model.onnx"
    before = _sha(encoder)
    assert main(["quantize", str(path), "--recipe", "int4", "--graphs",
                 "decoder_model_merged"]) == 0
    assert re.search(r"Wrote variant 'q4' \(int4, [0-9.]+ MB\): onnx/encoder_model.onnx, "
                     r"onnx/decoder_model_merged_q4.onnx", capsys.readouterr().out)
    bundle = Bundle.load(path)
    q4 = bundle.variants["q4"]
    assert q4["files"] == {"encoder_model": "onnx/encoder_model.onnx",
                           "decoder_model_merged": "onnx/decoder_model_merged_q4.onnx"}
    assert q4["recipe"]["shared"] == {"encoder_model": "fp32"}
    tokens = _greedy(pipeline(model=path, variant="q4"), PROMPTS[0])
    assert len(tokens) > 1
    # replacing it (with every graph, then with the decoder again) keeps fp32's encoder
    variant_from_bundle(path, "int4", overwrite=True)
    assert (path / "onnx/encoder_model_q4.onnx").is_file() and _sha(encoder) == before
    variant_from_bundle(path, "int4", graphs=["decoder_model_merged"], overwrite=True)
    assert not (path / "onnx/encoder_model_q4.onnx").exists() and _sha(encoder) == before
    bundle = Bundle.load(path)
    bundle.graph_path("encoder_model", "fp32")  # checksums still hold
    bundle.graph_path("encoder_model", "q4")


# --- bad input ----------------------------------------------------------------------------------

def test_a_graph_that_does_not_exist(tiny_bundle, tmp_path):
    path = shutil.copytree(tiny_bundle("bart", "text2text-generation"), tmp_path / "bart")
    with pytest.raises(InputError, match="has no graph 'decoder_merged'. Did you mean "
                                         "'decoder_model_merged'"):
        variant_from_bundle(path, "dynamic-int8", graphs=["decoder_merged"])
    with pytest.raises(InputError, match="graphs takes a non-empty list of graph names"):
        variant_from_bundle(path, "dynamic-int8", graphs="decoder_model_merged")
    assert list(Bundle.load(path).variants) == ["fp32"]


def test_nodes_to_exclude_of_a_merged_decoder(tiny_bundle, tmp_path):
    path = shutil.copytree(tiny_bundle("bart", "text2text-generation"), tmp_path / "bart")
    merged = onnx.load(str(path / "onnx/decoder_model_merged.onnx"))
    branches = merged_branches(merged)
    names = {b: {n.name for n in m.graph.node if n.op_type == "MatMul"}
             for b, m in branches.models.items()}
    both = sorted(names["no_past"] & names["with_past"])[0]
    with pytest.raises(InputError, match="no node of either branch of the merged decoder. "
                                         "Did you mean"):
        variant_from_bundle(path, "dynamic-int8", graphs=["decoder_model_merged"],
                            nodes_to_exclude=[both + "x"])
    variant_from_bundle(path, "dynamic-int8", graphs=["decoder_model_merged"],
                        nodes_to_exclude=[both])
    model = onnx.load(str(path / "onnx/decoder_model_merged_int8.onnx"))
    for attribute in model.graph.node[0].attribute:  # left float in both branches
        node = next(n for n in attribute.g.node if n.name == both)
        assert node.op_type == "MatMul"


def test_nodes_to_exclude_per_graph(tiny_bundle, tmp_path):
    """A mapping names each graph's own nodes (an encoder and a decoder exported apart may
    share node names: T5's share /Mul and /Constant); one list goes to every graph that has
    such a node."""
    path = shutil.copytree(tiny_bundle("t5", "translation"), tmp_path / "t5")
    bundle = Bundle.load(path)
    encoder = onnx.load(str(bundle.graph_path("encoder_model", "fp32")))
    first = next(n.name for n in encoder.graph.node if n.op_type == "MatMul")
    variant_from_bundle(path, "dynamic-int8", nodes_to_exclude={"encoder_model": [first]})
    graphs = Bundle.load(path).variants["int8"]["recipe"]["graphs"]
    assert graphs["encoder_model"]["nodes_to_exclude"] == [first]
    assert graphs["decoder_model_merged"]["nodes_to_exclude"] == []
    model = onnx.load(str(Bundle.load(path).graph_path("encoder_model", "int8")))
    assert next(n for n in model.graph.node if n.name == first).op_type == "MatMul"
    with pytest.raises(InputError, match="names the graph 'encoder'.*Did you mean "
                                         "'encoder_model'"):
        variant_from_bundle(path, "dynamic-int8", name="x", nodes_to_exclude={"encoder": []})
    with pytest.raises(InputError, match="names 'nothing', which is no node of the graphs it "
                                         "makes .*Note: name the nodes per graph"):
        variant_from_bundle(path, "dynamic-int8", name="x", nodes_to_exclude=[first, "nothing"])
    variant_from_bundle(path, "dynamic-int8", name="both", nodes_to_exclude=[first])
    assert Bundle.load(path).variants["both"]["recipe"]["graphs"]["encoder_model"][
        "nodes_to_exclude"] == [first]


def test_static_int8_of_a_generative_bundle_needs_texts(tiny_bundle, tmp_path):
    path = shutil.copytree(tiny_bundle("gpt2", "text-generation"), tmp_path / "gpt2")
    np.savez(tmp_path / "feeds.npz", input_ids=np.ones((2, 3), np.int64))
    with pytest.raises(InputError, match="calibrates and compares from its inputs, not from "
                                         "arrays.*a text file"):
        variant_from_bundle(path, "static-int8", calibration=tmp_path / "feeds.npz")
    with pytest.raises(InputError, match="needs calibration data"):
        variant_from_bundle(path, "static-int8")


def test_a_merged_decoder_calibrated_without_cached_steps(tiny_bundle, tmp_path):
    """Feeds of the prompt step only never reach the cached branch: a clear error, not a
    branch quantized with ranges from nothing."""
    bundle = Bundle.load(tiny_bundle("t5", "text2text-generation"))
    source = bundle.graph_path("decoder_model_merged")
    model = onnx.load(str(source))
    branches = merged_branches(model)
    feed = {"use_cache_branch": np.array([False])}
    assert {k: len(v) for k, v in branch_feeds(branches, [feed]).items()} == {
        "no_past": 1, "with_past": 0}
    with pytest.raises(InputError, match="never ran the merged decoder's 'with_past' branch"):
        merged_recipe(RECIPES["static-int8"].make, "static-int8", source, tmp_path / "m.onnx",
                      feeds=[feed])
    with pytest.raises(InputError, match="has no 'use_cache_branch', the input that picks"):
        branch_feeds(branches, [{"input_ids": np.ones((1, 1), np.int64)}])
    with pytest.raises(InputError, match="not a merged decoder"):
        merged_branches(onnx.load(str(bundle.graph_path("encoder_model"))))
