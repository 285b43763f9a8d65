"""A checkpoint is untrusted input: the exporter never reads or writes outside it or the bundle
because of a path one of its files names, and a malformed file is an ExportError that says what
is wrong, raised before the slow trace. Every checkpoint here is built in tmp_path, and so is
every "victim" file that a hostile one aims at."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from exporter import bundle_from_checkpoint
from exporter.build import _export_error, _save_tokenizer, _write_json_from_checkpoint
from runtime import Bundle, ExportError, UnsafePathError

TRANSFORMER = {"idx": 0, "name": "0", "path": "",
               "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling",
           "type": "sentence_transformers.models.Pooling"}
POOLING_CONFIG = {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def files_under(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` with its bytes (a symlink: where it points), to tell that a
    failed export changed nothing and left nothing behind."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_file():
            found[name] = path.read_bytes()
        else:
            found[name] = "folder"
    return found


@pytest.fixture
def sentence_checkpoint(tiny_checkpoint, tmp_path):
    """A tiny BERT in the sentence-transformers layout (modules.json, 1_Pooling/), in tmp_path."""
    checkpoint = shutil.copytree(tiny_checkpoint("bert", "feature-extraction"),
                                 tmp_path / "checkpoint")
    write_json(checkpoint / "modules.json", [TRANSFORMER, POOLING])
    write_json(checkpoint / "1_Pooling" / "config.json", POOLING_CONFIG)
    write_json(checkpoint / "sentence_bert_config.json", {"max_seq_length": 128})
    return checkpoint


class Traced(BaseException):
    """Raised where the slow ONNX trace would start (a BaseException: no handler takes it)."""


@pytest.fixture
def refused(monkeypatch, tmp_path):
    """refused(checkpoint, error, match) exports ``checkpoint``, which must fail with ``error``
    before the trace starts, and leave tmp_path as it was: no bundle, no staging folder, no
    file written or changed anywhere."""
    import optimum.exporters.onnx

    def trace(*args, **kwargs):
        raise Traced

    monkeypatch.setattr(optimum.exporters.onnx, "onnx_export_from_model", trace)

    def export(checkpoint: Path, error=ExportError, match: str | None = None):
        before = files_under(tmp_path)
        with pytest.raises(error, match=match) as info:
            bundle_from_checkpoint(checkpoint, tmp_path / "out" / "bundle")
        after = files_under(tmp_path)
        if "out" not in before and after.get("out") == "folder":
            del after["out"]  # the bundle's parent folder, made when the staging folder was
        assert after == before
        return info.value

    return export


# --- paths in modules.json -------------------------------------------------------------------
def test_a_module_path_with_dotdot_reads_and_writes_nothing_outside(
        refused, sentence_checkpoint, tmp_path):
    # Unchecked, the Pooling config would be read from tmp_path/evil and copied to
    # <staging>/../evil/config.json, which is tmp_path/out/evil/config.json.
    write_json(tmp_path / "evil" / "config.json", POOLING_CONFIG)
    write_json(tmp_path / "out" / "evil" / "config.json", {"victim": True})
    write_json(sentence_checkpoint / "modules.json",
               [TRANSFORMER, dict(POOLING, path="../evil")])
    error = refused(sentence_checkpoint, UnsafePathError,
                    match=r"modules.json entry 1 'path' names '\.\./evil', which has a '\.\.' part")
    assert "Note:" in str(error)
    assert json.loads((tmp_path / "out" / "evil" / "config.json").read_text()) == {"victim": True}


def test_an_absolute_module_path_is_refused(refused, sentence_checkpoint, tmp_path):
    write_json(tmp_path / "evil" / "config.json", POOLING_CONFIG)
    write_json(sentence_checkpoint / "modules.json",
               [TRANSFORMER, dict(POOLING, path=str(tmp_path / "evil"))])
    refused(sentence_checkpoint, UnsafePathError, match="is absolute")


def test_a_module_folder_symlinked_outside_is_refused(refused, sentence_checkpoint, tmp_path):
    write_json(tmp_path / "elsewhere" / "config.json", POOLING_CONFIG)
    shutil.rmtree(sentence_checkpoint / "1_Pooling")
    (sentence_checkpoint / "1_Pooling").symlink_to(tmp_path / "elsewhere",
                                                   target_is_directory=True)
    refused(sentence_checkpoint, UnsafePathError,
            match="a folder that a symlink leads outside")


def test_a_symlink_into_a_module_folder_leads_nowhere_outside_either(
        refused, sentence_checkpoint, tmp_path):
    """Any module's path is checked, not only the Pooling module's."""
    (tmp_path / "elsewhere").mkdir()
    (sentence_checkpoint / "2_Normalize").symlink_to(tmp_path / "elsewhere")
    normalize = {"idx": 2, "name": "2", "path": "2_Normalize/inner",
                 "type": "sentence_transformers.models.Normalize"}
    write_json(sentence_checkpoint / "modules.json", [TRANSFORMER, POOLING, normalize])
    refused(sentence_checkpoint, UnsafePathError, match="modules.json entry 2")


def test_a_weight_index_naming_a_shard_outside_is_refused(refused, sentence_checkpoint):
    write_json(sentence_checkpoint / "model.safetensors.index.json",
               {"metadata": {}, "weight_map": {"embeddings.weight": "../other/model.safetensors"}})
    refused(sentence_checkpoint, UnsafePathError, match="weight_map entry")


def test_the_bundle_side_writes_only_inside_the_bundle(tmp_path):
    """What the bundle takes from a checkpoint is written through ``inside(staging, ...)``: a
    folder planted as a symlink, or a name that climbs out, does not carry the write out."""
    staging, outside = tmp_path / "staging", tmp_path / "outside"
    staging.mkdir()
    outside.mkdir()
    (staging / "1_Pooling").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError):
        _write_json_from_checkpoint(staging, "1_Pooling/config.json", POOLING_CONFIG)
    with pytest.raises(UnsafePathError):
        _write_json_from_checkpoint(staging, "../outside/config.json", POOLING_CONFIG)
    write_json(staging / "reports" / "validation.json", {})
    with pytest.raises(ExportError, match="would take the place of a file of the bundle"):
        _write_json_from_checkpoint(staging, "reports/validation.json/config.json", {})
    with pytest.raises(ExportError, match="would take the place of a file of the bundle"):
        _write_json_from_checkpoint(staging, "reports/validation.json", {})
    assert list(outside.iterdir()) == []


# --- malformed files ---------------------------------------------------------------------------
MALFORMED_MODULES = {
    "an object": ({"0": TRANSFORMER}, "holds a JSON object, not a JSON array"),
    "an entry that is a string": ([TRANSFORMER, "1_Pooling"], "entry 1 is '1_Pooling', not an"),
    "a path that is a number": ([TRANSFORMER, dict(POOLING, path=1)], "path=1, not a string"),
    "no path": ([TRANSFORMER, {k: v for k, v in POOLING.items() if k != "path"}], "no path"),
    "no type": ([{k: v for k, v in POOLING.items() if k != "type"}], "type=None, not a string"),
    "pooling in the checkpoint folder": ([TRANSFORMER, dict(POOLING, path="")],
                                         "puts the Pooling module in the checkpoint folder"),
    "pooling folder without config": ([TRANSFORMER, dict(POOLING, path="2_Pooling")],
                                      "has no config.json"),
    "an unknown module": ([TRANSFORMER, POOLING, dict(POOLING, type="x.Dense", path="2_Dense")],
                          "does not run yet"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_MODULES))
def test_malformed_modules_json_is_an_export_error(refused, case, sentence_checkpoint):
    modules, message = MALFORMED_MODULES[case]
    write_json(sentence_checkpoint / "modules.json", modules)
    error = refused(sentence_checkpoint, match=message)
    assert "Note:" in str(error)


@pytest.mark.parametrize("content, message", [
    (b"[{", "is not valid JSON"),
    (b"\xff\xfe[]", "is not UTF-8"),
    (b"[" * 100 + b"]" * 100, "nested"),
], ids=["not JSON", "not UTF-8", "nested too deep"])
def test_unreadable_modules_json_is_an_export_error(refused, content, message,
                                                    sentence_checkpoint):
    (sentence_checkpoint / "modules.json").write_bytes(content)
    refused(sentence_checkpoint, match=message)


def test_a_fifo_for_a_file_is_refused_without_waiting_on_it(refused, sentence_checkpoint):
    (sentence_checkpoint / "modules.json").unlink()
    os.mkfifo(sentence_checkpoint / "modules.json")
    refused(sentence_checkpoint, match="not a regular file")


@pytest.mark.parametrize("config, message", [
    ([1, 2], "holds a JSON array, not a JSON object"),
    ({"pooling_mode_mean_tokens": False}, "No pooling mode"),
], ids=["a list", "no mode"])
def test_a_malformed_pooling_config_is_an_export_error(refused, config, message,
                                                       sentence_checkpoint):
    write_json(sentence_checkpoint / "1_Pooling" / "config.json", config)
    refused(sentence_checkpoint, match=message)


@pytest.mark.parametrize("config, message", [
    ({"max_seq_length": "256"}, "max_seq_length='256', not a positive number"),
    ({"max_seq_length": 0}, "max_seq_length=0"),
    ({"max_seq_length": True}, "max_seq_length=True"),
    (["max_seq_length", 256], "holds a JSON array, not a JSON object"),
], ids=["a string", "zero", "a boolean", "a list"])
def test_a_malformed_sentence_bert_config_is_an_export_error(refused, config, message,
                                                             sentence_checkpoint):
    write_json(sentence_checkpoint / "sentence_bert_config.json", config)
    refused(sentence_checkpoint, match=message)


@pytest.mark.parametrize("content, message", [
    (b'[{"model_type": "bert"}]', "config.json at .* holds a JSON array, not a JSON object"),
    ('{"model_type": "bert", "name": "caf\u00e9"}'.encode("latin-1"), "is not UTF-8 text"),
    (b'{"model_type": "bert",', "is not valid JSON"),
    (b'{"model_type": NaN}', "is not valid JSON"),
    (b'{"hidden_size": 32}', "has no model_type, so edgeport cannot tell the architecture"),
    (b'{"model_type": ["bert"]}', r"model_type=\['bert'\], not a name"),
    (b'{"model_type": "bert", "architectures": "BertModel"}', "not a list of class names"),
], ids=["a list", "not UTF-8", "not JSON", "NaN", "no model_type", "model_type a list",
        "architectures a string"])
def test_a_malformed_config_json_is_an_export_error(refused, content, message, tiny_checkpoint,
                                                    tmp_path):
    checkpoint = shutil.copytree(tiny_checkpoint("bert", "feature-extraction"),
                                 tmp_path / "checkpoint")
    (checkpoint / "config.json").write_bytes(content)
    error = refused(checkpoint, match=message)
    assert "Note:" in str(error)


# --- what transformers makes of a crafted config ---------------------------------------------
@pytest.mark.parametrize("values, message", [
    ({"num_attention_heads": 0}, "by zero"),
    ({"hidden_size": "32"}, "str"),
    ({"vocab_size": -1}, "negative dimension"),
    ({"id2label": [1, 2]}, "id2label should be a dictionary"),
], ids=["zero heads", "size a string", "negative size", "labels a list"])
def test_transformers_failing_on_a_crafted_config_is_one_export_error(
        refused, values, message, tiny_checkpoint, tmp_path):
    checkpoint = shutil.copytree(tiny_checkpoint("bert", "feature-extraction"),
                                 tmp_path / "checkpoint")
    config = json.loads((checkpoint / "config.json").read_text())
    write_json(checkpoint / "config.json", {**config, **values})
    error = refused(checkpoint, match=message)
    assert str(error).startswith(("transformers could not load", "Could not load the tokenizer"))
    assert "Note:" in str(error)
    assert error.__cause__ is None and error.__suppress_context__  # one error, not a chain


def test_an_error_without_a_message_still_says_what_failed(refused, tiny_checkpoint, tmp_path,
                                                           monkeypatch):
    import transformers

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", out_of_memory)
    checkpoint = shutil.copytree(tiny_checkpoint("bert", "feature-extraction"),
                                 tmp_path / "checkpoint")
    refused(checkpoint, match="could not load .* as AutoModel: MemoryError. Note:")


def test_errors_after_the_trace_keep_their_cause():
    with pytest.raises(ExportError, match="Validating failed: index out of range in self. "
                                          "Note: check") as info:
        with _export_error("Validating failed", "check it.", cause=True):
            raise IndexError("index out of range in self\n  deep detail")
    assert isinstance(info.value.__cause__, IndexError)


# --- tokenizer files ---------------------------------------------------------------------------
def test_tokenizer_config_cannot_name_a_file_outside_the_checkpoint(tiny_checkpoint, tmp_path):
    """transformers opens what vocab_file names, before the checkpoint's own vocab.txt: the
    victim's lines would become the bundle's vocabulary."""
    checkpoint = shutil.copytree(tiny_checkpoint("bert", "feature-extraction"),
                                 tmp_path / "checkpoint")
    victim = tmp_path / "victim.txt"
    victim.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nvictimsecret\n")
    settings = json.loads((checkpoint / "tokenizer_config.json").read_text())
    write_json(checkpoint / "tokenizer_config.json",
               {**settings, "vocab_file": str(victim), "tokenizer_file": str(victim)})
    (checkpoint / "tokenizer.json").unlink()  # so the vocabulary is built from vocab_file
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    assert _save_tokenizer(checkpoint, bundle) == "tokenizer.json"
    vocabulary = json.loads((bundle / "tokenizer.json").read_text())["model"]["vocab"]
    assert "victimsecret" not in vocabulary and len(vocabulary) > 30000
    for path in bundle.iterdir():  # no file names the victim, nor holds its secret
        assert "victimsecret" not in path.read_text() and str(victim) not in path.read_text()


# --- a benign checkpoint laid out as the Hub cache lays it out -----------------------------------
def test_a_hub_cache_snapshot_with_symlinked_files_exports(sentence_checkpoint, tmp_path):
    """The Hub cache links every file of a snapshot to a blob outside the snapshot folder:
    following a symlinked file is allowed, and the bundle gets the file's contents, never a
    link."""
    hub = tmp_path / "hub"
    snapshot = hub / "snapshots" / "0123abcd"
    (hub / "blobs").mkdir(parents=True)
    for index, path in enumerate(sorted(p for p in sentence_checkpoint.rglob("*")
                                        if p.is_file())):
        relative = path.relative_to(sentence_checkpoint)
        blob = hub / "blobs" / f"blob{index}"
        shutil.copyfile(path, blob)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    blobs = files_under(hub / "blobs")

    bundle = bundle_from_checkpoint(snapshot, tmp_path / "bundle")
    assert files_under(hub / "blobs") == blobs
    assert not [p for p in bundle.rglob("*") if p.is_symlink()]
    loaded = Bundle.load(bundle)
    assert loaded.manifest["preprocessing"]["sentence_transformers"] is True
    assert json.loads((bundle / "1_Pooling" / "config.json").read_text()) == POOLING_CONFIG
    assert json.loads((bundle / "modules.json").read_text()) == [TRANSFORMER, POOLING]
    from runtime.text.pooling import SentencePooling

    assert SentencePooling.from_dir(bundle) == SentencePooling(modes=("mean",),
                                                               max_seq_length=128)
