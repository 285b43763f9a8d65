"""The edgeport command: export, inspect, run; errors are one clear line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli import main


def test_export_inspect_run(tiny_checkpoint, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    assert main(["export", str(tiny_checkpoint("distilbert", "text-classification")),
                 "-o", str(bundle)]) == 0
    assert "validated against PyTorch" in capsys.readouterr().out

    assert main(["inspect", str(bundle)]) == 0
    text = capsys.readouterr().out
    assert "text-classification" in text and "input_ids: int64[batch, sequence]" in text
    assert "validation  passed against pytorch" in text
    assert main(["inspect", str(bundle), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["variants"]["fp32"]["bytes"] == (bundle / "onnx" / "model.onnx").stat().st_size

    assert main(["run", str(bundle), "good", "bad", "--json", "--set", "top_k=2"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [len(r) for r in results] == [2, 2]
    assert {r["label"] for r in results[0]} <= {"negative", "neutral", "positive"}


def test_run_reads_stdin_and_prints_readable_lines(tiny_bundle, monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("first line\n\nsecond line\n"))
    assert main(["run", str(tiny_bundle("bert", "text-classification"))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "first line" and out[2] == "second line"
    assert json.loads(out[1])[0]["label"] in {"negative", "neutral", "positive"}


@pytest.mark.parametrize("argv, message", [
    (["run", "/no/such/bundle", "x"], "No bundle at /no/such/bundle"),
    (["run", "{bundle}", "x", "--set", "top_k"], "--set takes KEY=VALUE"),
    (["run", "{bundle}", "x", "--set", "topk=1"], "Did you mean 'top_k'"),
    (["run", "{bundle}", "x", "--task", "fill-mask"], "serves 'text-classification'"),
    (["run", "{bundle}", "x", "--context", "c"], "--context is for question-answering"),
    (["export", "/no/such/dir", "-o", "{tmp}/b"], "is not a checkpoint directory"),
])
def test_errors_are_one_clear_line(argv, message, tiny_bundle, tmp_path, capsys):
    bundle = tiny_bundle("bert", "text-classification")
    argv = [a.format(bundle=bundle, tmp=tmp_path) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith(f"edgeport {argv[0]}: error:")


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "edgeport"
    if not script.exists():
        pytest.skip("edgeport is not installed in this environment's bin directory")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("edgeport ")


def test_run_question_answering_and_ner(tiny_bundle, capsys):
    qa = str(tiny_bundle("bert", "question-answering"))
    assert main(["run", qa, "Where is it?", "--context", "It is in Paris.", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer) == {"score", "start", "end", "answer"}
    assert main(["run", qa, "Where is it?"]) == 1
    assert "needs --context" in capsys.readouterr().err
    ner = str(tiny_bundle("bert", "token-classification"))
    assert main(["run", ner, "Ann lives in Paris", "--json",
                 "--set", "aggregation_strategy=simple", "--set", "ignore_labels=[]"]) == 0
    entities = json.loads(capsys.readouterr().out)
    assert entities and all("entity_group" in e for e in entities)


def test_quantize_and_compare(tiny_bundle, tmp_path, capsys):
    import shutil

    bundle = shutil.copytree(tiny_bundle("bert", "text-classification"), tmp_path / "b")
    assert main(["quantize", str(bundle), "--recipe", "dynamic-int8"]) == 0
    assert "Wrote variant 'int8'" in capsys.readouterr().out
    assert main(["quantize", str(bundle), "--recipe", "dynamic-int8", "--name", "q",
                 "--option", "per_channel=false", "--max-drop", "top1=0.5"]) == 0
    assert "top1_agreement drop" in capsys.readouterr().out
    assert main(["run", str(bundle), "--variant", "int8", "fine", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"]
    lines = tmp_path / "lines.txt"
    lines.write_text("One calibration line.\nAnother, longer calibration line here.\n")
    assert main(["quantize", str(bundle), "--recipe", "optimize"]) == 0
    assert main(["quantize", str(bundle), "--recipe", "dynamic-int8", "--from", "opt",
                 "--name", "rows", "--option", "row_scaling=true", "--calibration",
                 str(lines)]) == 0
    assert "Wrote variant 'rows'" in capsys.readouterr().out
    for argv, message in [
        (["quantize", str(bundle), "--recipe", "dynamic-int8", "--from", "opt", "--name", "y",
          "--option", "row_scaling=true"], "pass --calibration PATH"),
        (["quantize", str(bundle), "--recipe", "dynamic-int8"], "already has a variant 'int8'"),
        (["quantize", str(bundle), "--recipe", "dynamic-int9"], "Did you mean 'dynamic-int8'"),
        (["quantize", str(bundle), "--recipe", "static-int8"], "needs calibration data"),
        (["quantize", str(bundle), "--recipe", "dynamic-int8", "--name", "x", "--from", "int8"],
         "already quantized"),
        (["quantize", str(bundle), "--recipe", "dynamic-int8", "--option", "colour=red"],
         "takes no option 'colour'"),
    ]:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert main(["compare", str(bundle), "--variants", "int8", "--no-layers"]) == 0
    assert (bundle / "reports" / "accuracy.html").is_file()


def test_run_on_images_saves_masks_and_depth(tiny_bundle, tmp_path, capsys):
    from images import photos

    photo = tmp_path / "coffee.png"
    photos()[1].save(photo)
    segformer = str(tiny_bundle("segformer", "image-segmentation"))
    assert main(["run", segformer, str(photo), "--json"]) == 0
    segments = json.loads(capsys.readouterr().out)
    assert segments and all(s["mask"].startswith("<image L 600x400: pass --output-dir")
                            for s in segments)

    out = tmp_path / "out"
    assert main(["run", segformer, str(photo), "--json", "--output-dir", str(out)]) == 0
    segments = json.loads(capsys.readouterr().out)
    from PIL import Image

    masks = [Image.open(s["mask"]) for s in segments]
    assert all(m.size == (600, 400) and m.mode == "L" for m in masks)
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(s["mask"]).name for s in segments)

    glpn = str(tiny_bundle("glpn", "depth-estimation"))
    assert main(["run", glpn, str(photo), "--json", "--output-dir", str(out)]) == 0
    depth = json.loads(capsys.readouterr().out)
    import numpy as np

    assert np.load(depth["predicted_depth"]).shape == (400, 600)
    assert Image.open(depth["depth"]).size == (600, 400)


def test_run_zero_shot_with_labels(tiny_bundle, tmp_path, capsys):
    from images import photos

    photo = tmp_path / "cat.jpg"
    photos()[2].save(photo)
    clip = str(tiny_bundle("clip", "zero-shot-image-classification"))
    assert main(["run", clip, str(photo), "--json",
                 "--set", 'candidate_labels=["cat", "dog"]']) == 0
    assert {r["label"] for r in json.loads(capsys.readouterr().out)} == {"cat", "dog"}
    assert main(["run", clip, str(photo)]) == 1
    assert "candidate_labels must be a non-empty list" in capsys.readouterr().err
    missing = str(tmp_path / "missing.jpg")
    assert main(["run", clip, missing, "--set", 'candidate_labels=["a"]']) == 1
    assert "missing.jpg" in capsys.readouterr().err


def test_run_transcribes_an_audio_file_with_whisper(tiny_bundle, capsys):
    from audio_samples import JFK

    from runtime import pipeline

    bundle = tiny_bundle("whisper", "automatic-speech-recognition")
    assert main(["run", str(bundle), str(JFK), "--json", "--set", "num_beams=1",
                 "--set", "return_timestamps=true"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = pipeline(model=bundle)(str(JFK), num_beams=1, return_timestamps=True)
    assert result == json.loads(json.dumps(expected)) and result["chunks"]
    assert main(["run", str(bundle), str(JFK), "--set", "return_timestamps=\"word\""]) == 1
    assert "cross-attention" in capsys.readouterr().err
