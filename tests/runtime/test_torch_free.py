"""The runtime never imports torch or transformers: proven in a process where they cannot be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Put in front of sys.meta_path: any import of these names fails as if they were not installed.
BLOCKER = textwrap.dedent("""
    import sys
    BLOCKED = {blocked!r}
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
            return None
    sys.meta_path.insert(0, Blocker())
""")


def _run(code: str, *args: str, blocked=("torch", "transformers", "optimum", "exporter",
                                         "calibration")) -> subprocess.CompletedProcess:
    blocker = BLOCKER.replace("{blocked!r}", repr(tuple(blocked)))
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_runtime_pipeline_runs_where_torch_cannot_be_imported(tiny_bundle):
    bundle = tiny_bundle("bert", "feature-extraction")
    proc = _run("""
        import json, sys
        import runtime
        from runtime import pipeline
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker does not work")
        embed = pipeline("feature-extraction", model=sys.argv[1], pooling="mean", normalize=True)
        vector = embed("torch is not here")
        heavy = [m for m in ("torch", "transformers", "optimum") if m in sys.modules]
        print(json.dumps({"dim": len(vector), "heavy": heavy}))
    """, str(bundle))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"dim": 32, "heavy": []}


def test_vision_pipelines_run_where_torch_cannot_be_imported(tiny_bundle, tmp_path):
    from images import photos

    photo = tmp_path / "astronaut.jpg"
    photos()[0].save(photo)
    bundles = [tiny_bundle("mask2former", "image-segmentation"),
               tiny_bundle("detr", "object-detection"),
               tiny_bundle("clip", "zero-shot-image-classification")]
    proc = _run("""
        import json, sys
        from runtime import pipeline
        segment, detect, classify = (pipeline(model=path) for path in sys.argv[2:])
        segments = segment(sys.argv[1], threshold=0.0)
        boxes = detect(sys.argv[1], threshold=0.0)
        labels = classify(sys.argv[1], candidate_labels=["a", "b"])
        heavy = [m for m in ("torch", "transformers", "optimum") if m in sys.modules]
        print(json.dumps({"counts": [len(segments), len(boxes), len(labels)], "heavy": heavy}))
    """, str(photo), *map(str, bundles))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["heavy"] == [] and all(result["counts"])


def test_generation_runs_where_torch_cannot_be_imported(tiny_bundle):
    bundles = [tiny_bundle("gpt2", "text-generation"), tiny_bundle("t5", "translation")]
    proc = _run("""
        import json, sys
        from runtime import pipeline
        generate = pipeline(model=sys.argv[1])
        translate = pipeline("translation_en_to_de", model=sys.argv[2])
        text = generate("Hello", do_sample=False, max_new_tokens=5)[0]["generated_text"]
        pieces = list(generate.stream("Hello", do_sample=False, max_new_tokens=5))
        german = translate("The house is big.", max_new_tokens=5, return_tensors=True)
        heavy = [m for m in ("torch", "transformers", "optimum") if m in sys.modules]
        print(json.dumps({"text": text, "streamed": "".join(pieces),
                          "german": german[0]["translation_token_ids"].tolist(),
                          "heavy": heavy}))
    """, *map(str, bundles))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["heavy"] == [] and result["text"].startswith("Hello")
    assert result["text"] == "Hello" + result["streamed"]
    # the decoder start token and at least one generated token (the tiny T5's vocabulary is
    # trained anew each session, so what its tokens spell, possibly nothing, is not fixed)
    assert len(result["german"]) >= 2


def test_speech_runs_where_torch_cannot_be_imported(tiny_bundle):
    from audio_samples import JFK

    bundles = [tiny_bundle("wav2vec2", "automatic-speech-recognition"),
               tiny_bundle("hubert", "audio-classification"),
               tiny_bundle("whisper", "automatic-speech-recognition")]
    proc = _run("""
        import json, sys
        from runtime import pipeline
        transcribe, classify, whisper = (pipeline(model=path) for path in sys.argv[2:])
        text = transcribe(sys.argv[1], chunk_length_s=5)["text"]
        labels = classify(sys.argv[1], top_k=2)
        segments = whisper(sys.argv[1], num_beams=1, return_timestamps=True)["chunks"]
        heavy = [m for m in ("torch", "transformers", "optimum") if m in sys.modules]
        print(json.dumps({"text": text, "labels": len(labels), "segments": len(segments),
                          "heavy": heavy}))
    """, str(JFK), *map(str, bundles))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["heavy"] == [] and result["labels"] == 2 and isinstance(result["text"], str)
    assert result["segments"] >= 1


def test_cli_run_and_inspect_where_torch_cannot_be_imported(tiny_bundle):
    bundle = tiny_bundle("bert", "text-classification")
    proc = _run("""
        import sys
        from runtime.cli import main
        sys.exit(main(sys.argv[1:]))
    """, "run", str(bundle), "what a day", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["label"] in {"negative", "neutral", "positive"}
    # the exporter is installed with the runtime, but its extra (torch, ...) may not be
    proc = _run("import sys\nfrom runtime.cli import main\nsys.exit(main(sys.argv[1:]))",
                "export", "ckpt", "-o", "out", blocked=("torch", "transformers", "optimum"))
    assert proc.returncode == 1
    assert "pip install 'edgeport[export]'" in proc.stderr and "Traceback" not in proc.stderr


def test_no_runtime_module_imports_a_forbidden_package():
    """A static check beside the dynamic one: no import statement of a forbidden package."""
    import ast

    forbidden = {"torch", "transformers", "optimum", "exporter", "calibration"}
    root = Path(__file__).resolve().parents[2] / "runtime"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert not offenders


@pytest.mark.parametrize("module", ["runtime", "runtime.cli", "runtime.pipeline"])
def test_importing_the_runtime_stays_light(module):
    proc = _run(f"import {module}, sys; print(sorted(m for m in ('torch','transformers','onnx') "
                "if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_cli_bench_where_torch_cannot_be_imported(tiny_bundle):
    """`edgeport bench` runs torch-free; --against transformers then says which extra it needs."""
    bundle = tiny_bundle("bert", "text-classification")
    code = "import sys\nfrom runtime.cli import main\nsys.exit(main(sys.argv[1:]))"
    proc = _run(code, "bench", str(bundle), "--iterations", "2", "--sequence", "8",
                "--cold-starts", "0")
    assert proc.returncode == 0, proc.stderr
    assert "| fp32 | 1 | 8 |" in proc.stdout
    proc = _run(code, "bench", str(bundle), "--against", "transformers",
                blocked=("torch", "transformers", "optimum"))
    assert proc.returncode == 1
    assert "pip install 'edgeport[export]'" in proc.stderr and "Traceback" not in proc.stderr


def test_text_and_vision_pipelines_run_where_torch_cannot_be_imported(tiny_bundle, tmp_path):
    from images import photos

    photo = tmp_path / "coffee.png"
    photos()[1].save(photo)
    bundles = [tiny_bundle("vilt", "visual-question-answering"),
               tiny_bundle("visual_bert", "feature-extraction")]
    proc = _run("""
        import json, sys
        import numpy as np
        from runtime import pipeline
        answer, embed = (pipeline(model=path) for path in sys.argv[2:])
        answers = answer(image=sys.argv[1], question="What is this?", top_k=3)
        size = embed.engine.inputs[3].dims[2]
        hidden = embed("a cup", visual_embeds=np.ones((4, size), np.float32))
        heavy = [m for m in ("torch", "transformers", "optimum") if m in sys.modules]
        print(json.dumps({"answers": len(answers), "tokens": len(hidden[0]), "heavy": heavy}))
    """, str(photo), *map(str, bundles))
    assert proc.returncode == 0, proc.stderr
    # "a cup": [CLS] a cup [SEP], then the 4 regions
    assert json.loads(proc.stdout) == {"answers": 3, "tokens": 8, "heavy": []}
