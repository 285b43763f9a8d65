"""Export every architecture x task, validated against PyTorch; export errors and atomicity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from checkpoints import TINY_CONFIGS, build_tiny_checkpoint

from exporter import bundle_from_checkpoint
from exporter.architectures import ARCHITECTURES, TEXT_ENCODER_TASKS, infer_task
from runtime import Bundle, ExportError, TaskError, ValidationError
from runtime.dims import DIM_NAMES


@pytest.mark.parametrize("task", TEXT_ENCODER_TASKS)
@pytest.mark.parametrize("model_type", sorted(TINY_CONFIGS))
def test_export_validates_against_pytorch(model_type, task, tiny_bundle):
    bundle = Bundle.load(tiny_bundle(model_type, task))
    assert (bundle.task, bundle.model_type) == (task, model_type)
    report = json.loads((bundle.path / "reports" / "validation.json").read_text())
    assert report["passed"]
    # two batch sizes x two sequence lengths, every output compared
    assert {(c["batch"], c["sequence"]) for c in report["cases"]} == {
        (b, s) for b in (1, 3) for s in (9, 23)}
    graph = bundle.graphs["model"]
    assert {o["name"] for o in graph["outputs"]} == set(report["max_abs_diff"])
    for spec in graph["inputs"]:
        assert spec["dims"] == ["batch", "sequence"]
    for spec in graph["outputs"]:
        assert spec["dims"][0] == "batch"
        assert all(isinstance(d, int) or d in DIM_NAMES for d in spec["dims"])
        per_token = task != "text-classification"
        assert (spec["dims"][1] == "sequence") == per_token
    assert max(report["max_abs_diff"].values()) <= ARCHITECTURES[model_type].atol
    assert (bundle.path / "tokenizer.json").is_file()


def test_task_is_inferred_from_the_config(tiny_checkpoint, tmp_path):
    path = bundle_from_checkpoint(tiny_checkpoint("bert", "token-classification"), tmp_path / "b")
    assert Bundle.load(path).task == "token-classification"
    roberta = {"model_type": "roberta", "architectures": ["RobertaForMaskedLM"]}
    assert infer_task(roberta) == "fill-mask"
    with pytest.raises(ExportError, match="--task"):
        infer_task({"model_type": "bert"})


def test_slow_tokenizer_files_are_converted_to_tokenizer_json(tmp_path):
    checkpoint = build_tiny_checkpoint("bert", "fill-mask", tmp_path / "ckpt",
                                       slow_tokenizer_only=True)
    assert not (checkpoint / "tokenizer.json").exists()
    bundle = bundle_from_checkpoint(checkpoint, tmp_path / "bundle")
    from runtime.text.tokenizer import TextTokenizer

    tokenizer = TextTokenizer.from_dir(bundle)
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode_batch(["Hello there"])[0].ids) == [
        "[CLS]", "hello", "there", "[SEP]"]


def test_unknown_architecture_is_refused_with_the_known_ones(tiny_checkpoint, tmp_path):
    checkpoint = tmp_path / "ckpt"
    import shutil

    shutil.copytree(tiny_checkpoint("bert", "fill-mask"), checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["model_type"] = "bertt"
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"'bertt'.*Did you mean 'bert'"):
        bundle_from_checkpoint(checkpoint, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_bad_task_and_bad_checkpoint(tiny_checkpoint, tmp_path):
    with pytest.raises(TaskError, match="Did you mean 'fill-mask'"):
        bundle_from_checkpoint(tiny_checkpoint("bert", "fill-mask"), tmp_path / "b",
                               task="fil-mask")
    with pytest.raises(ExportError, match="not a Transformers checkpoint"):
        bundle_from_checkpoint(tmp_path, tmp_path / "b")
    with pytest.raises(ExportError, match="opset"):
        bundle_from_checkpoint(tiny_checkpoint("bert", "fill-mask"), tmp_path / "b", opset=7)


def test_failed_validation_leaves_nothing_behind(tiny_checkpoint, tmp_path):
    target = tmp_path / "out" / "bundle"
    with pytest.raises(ValidationError) as info:
        bundle_from_checkpoint(tiny_checkpoint("bert", "text-classification"), target,
                               atol=1e-12)
    message = str(info.value)
    assert "logits" in message and "max abs diff" in message and "<- fails" in message
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no staging directory left either


def test_existing_bundle_is_kept_unless_overwrite(tiny_checkpoint, tiny_bundle, tmp_path):
    target = tmp_path / "bundle"
    bundle_from_checkpoint(tiny_checkpoint("bert", "fill-mask"), target)
    before = (target / "manifest.json").read_text()
    with pytest.raises(Exception, match="already exists"):
        bundle_from_checkpoint(tiny_checkpoint("bert", "fill-mask"), target)
    assert (target / "manifest.json").read_text() == before
    bundle_from_checkpoint(tiny_checkpoint("bert", "text-classification"), target, overwrite=True)
    assert Bundle.load(target).task == "text-classification"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_opset_is_honored_and_recorded(tiny_checkpoint, tmp_path):
    path = bundle_from_checkpoint(tiny_checkpoint("distilbert", "text-classification"),
                                  tmp_path / "b", opset=17)
    assert Bundle.load(path).variants["fp32"]["recipe"]["opset"] == 17


@pytest.mark.parametrize("model_type, task", [("bert", "text-classification"),
                                             ("bart", "text2text-generation")])
def test_large_graphs_keep_their_weights_beside_them(model_type, task, tiny_checkpoint,
                                                     tiny_bundle, tmp_path, monkeypatch):
    """Graphs over EXTERNAL_DATA_BYTES are written with their weights in <file>_data (ONNX
    Runtime maps it: faster sessions); recorded, checksummed, and the same results. Forced
    here on tiny models by lowering the bound; BART's merged decoder has If branches."""
    from exporter import build
    from runtime import pipeline

    monkeypatch.setattr(build, "EXTERNAL_DATA_BYTES", 1000)
    path = bundle_from_checkpoint(tiny_checkpoint(model_type, task), tmp_path / "b", task=task)
    bundle = Bundle.load(path)
    files = bundle.variants["fp32"]["files"]
    assert bundle.variants["fp32"]["data_files"] == {g: [f + "_data"] for g, f in files.items()}
    for relative in files.values():
        graph, data = (path / relative).stat().st_size, (path / (relative + "_data")).stat().st_size
        assert graph < data, (relative, graph, data)
        mode = (path / relative).stat().st_mode & 0o777
        assert (path / (relative + "_data")).stat().st_mode & 0o777 == mode  # not onnx's 0600
        assert relative + "_data" in bundle.manifest["checksums"]
    text = "The quick brown fox"
    plain = pipeline(model=tiny_bundle(model_type, task))
    external = pipeline(model=path)
    if task == "text-classification":
        assert external(text)[0]["score"] == pytest.approx(plain(text)[0]["score"], abs=1e-6)
    else:
        assert external(text, max_new_tokens=5) == plain(text, max_new_tokens=5)


def test_onnx_outputs_match_pytorch_on_real_text(minilm_bundle):
    """The real checkpoint, real text: token embeddings from ONNX Runtime vs PyTorch."""
    import torch
    import transformers
    from checkpoints import minilm_dir

    from runtime.backends.engine import OrtEngine

    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    model = transformers.AutoModel.from_pretrained(minilm_dir()).eval()
    batch = tokenizer(["edgeport runs everywhere.", "A longer sentence, with commas."],
                      padding=True, return_tensors="np")
    got = OrtEngine(minilm_bundle / "onnx" / "model.onnx").run(dict(batch))["last_hidden_state"]
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)


def test_hub_id_that_cannot_be_downloaded_is_a_clear_error(monkeypatch, tmp_path):
    import huggingface_hub

    def offline(repo_id, **kwargs):
        raise OSError(f"Cannot reach the Hub for {repo_id}: network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ExportError, match="downloading it from the Hub failed.*local checkpoint"):
        bundle_from_checkpoint("someone/some-model", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_sentencepiece_vocabulary_is_converted_to_tokenizer_json(tiny_checkpoint, tmp_path):
    """An ALBERT checkpoint with only its slow sentencepiece tokenizer (spiece.model)."""
    import shutil

    import sentencepiece
    import transformers

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"edgeport exports model number {i} to onnx and runs it on "
                                f"devices without torch, sentence {i * 7}." for i in range(300)))
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "spiece"), vocab_size=120,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
        minloglevel=2)
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint("albert", "fill-mask"), checkpoint)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (checkpoint / name).unlink(missing_ok=True)
    slow = transformers.AlbertTokenizer(str(tmp_path / "spiece.model"))
    slow.save_pretrained(checkpoint)
    assert not (checkpoint / "tokenizer.json").exists()

    bundle = bundle_from_checkpoint(checkpoint, tmp_path / "bundle")
    from runtime.text.tokenizer import TextTokenizer

    text = "edgeport runs devices"
    expected = transformers.AlbertTokenizerFast.from_pretrained(checkpoint)(text)["input_ids"]
    assert TextTokenizer.from_dir(bundle).encode_batch([text])[0].ids == expected


def test_interrupted_export_leaves_nothing_behind(tiny_checkpoint, tmp_path, monkeypatch):
    import exporter.build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter.build, "validate_graph", interrupted)
    target = tmp_path / "out" / "bundle"
    with pytest.raises(KeyboardInterrupt):
        bundle_from_checkpoint(tiny_checkpoint("bert", "fill-mask"), target)
    assert list((tmp_path / "out").iterdir()) == []


def test_progress_lines_name_each_step(tiny_checkpoint, tmp_path):
    lines = []
    bundle_from_checkpoint(tiny_checkpoint("bert", "fill-mask"), tmp_path / "b",
                           progress=lines.append)
    assert [line.split()[0] for line in lines] == ["loading", "tracing", "validating"]
