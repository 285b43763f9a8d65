"""The ``llm`` graph: a decoder-only LM as ONNX Runtime runs LLMs fastest, built from the
checkpoint by onnxruntime-genai's model builder, and validated against PyTorch like any export.

The builder writes each layer's attention as one ``GroupQueryAttention`` node (rotary embedding
fused, the KV heads of grouped-query attention kept as they are, sliding windows and soft-capping
as attributes), RMSNorm and residual adds as ``SkipSimplifiedLayerNormalization``, and the
query, key and value projections as one packed MatMul. The graph's inputs and outputs have the
names of optimum's (``input_ids``, ``attention_mask``, ``past_key_values.*``; ``logits``,
``present.*``), and it takes no ``position_ids``: GroupQueryAttention counts positions from the
mask. Two consequences the runtime honors (``runtime.generation.onnx_model``):

- the cache can be one buffer per layer that the graph writes the new positions into
  (``present.*`` bound to the ``past_key_values.*`` buffer: no copy of the cache per step);
- a batch must not be padded (the positions are counted as if every row began at the start):
  prompts of different lengths are generated one by one.

Only the builder's own architectures with head sizes that are multiples of 16 (ONNX Runtime's
GroupQueryAttention on the CPU) are built; anything else is an ExportError saying why. Fixes to
what the builder does: it reads a view of the checkpoint where Llama 3's RoPE scaling is where
it looks; each layer's attention window is set as config.json's ``layer_types`` says (the
builder puts Gemma 2's sliding window on the wrong layers); SmolLM3's layers without RoPE lose
the rotary nodes the builder leaves in front of them; and the PyTorch reference of a model that
soft-caps its attention (Gemma 2) computes it eagerly, as the model defines it. Validation is
what shows each of these. The builder never runs a checkpoint's own code (``hf_remote`` off)
and reads only the checkpoint folder given.

At ``precision="fp16"`` it is the builder's GPU graph: weights, activations and the cache in
float16 (half the cache's memory and bandwidth), validated on ONNX Runtime's CPU against PyTorch
in fp32 within 1e-2 of the logits' scale.

>>> build_llm_graph("qwen2.5-0.5b/", Path("model_llm.onnx"))    # doctest: +SKIP
{'builder': 'onnxruntime-genai 0.11.2', 'attention': 'GroupQueryAttention', ...}
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from runtime.errors import ExportError, MissingDependencyError

# The rows of exporter.architectures whose builder graphs validate against PyTorch (each checked
# in tests/calibration/test_llm_recipe.py).
LLM_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3_text",
                   "smollm3")
_GQA_HEAD_MULTIPLE = 16
# The checkpoint validated at batch 1 only: the graph takes no padding.
_BATCH_SIZES = (1,)


def _require_builder():
    try:
        from onnxruntime_genai.models import builder
    except ImportError as exc:
        raise MissingDependencyError(
            f"The llm graph is built by onnxruntime-genai's model builder ({exc.name} is not "
            "installed). Note: install the llm extra, `pip install 'edgeport[llm]'` "
            "(onnxruntime-genai 0.11, whose builder reads checkpoints of transformers < 4.58)."
        ) from None
    return builder


def check_llm_config(config: dict) -> None:
    """An ExportError unless the builder makes an exact GroupQueryAttention graph of it."""
    model_type = config.get("model_type")
    if model_type not in LLM_MODEL_TYPES:
        raise ExportError(
            f"The llm graph is made for {', '.join(LLM_MODEL_TYPES)}; this checkpoint is "
            f"{str(model_type)[:40]!r}. Note: use the bundle's fp32 graph, or the int4 recipe "
            "on it."
        )
    heads = config.get("num_attention_heads")
    head_dim = config.get("head_dim") or (
        config.get("hidden_size", 0) // heads if isinstance(heads, int) and heads > 0 else 0)
    if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % _GQA_HEAD_MULTIPLE:
        raise ExportError(
            f"The llm graph's GroupQueryAttention takes head sizes that are multiples of "
            f"{_GQA_HEAD_MULTIPLE} on the CPU; this model's is {head_dim!r}. Note: use the "
            "bundle's fp32 graph, or the int4 recipe on it."
        )


def _builder_view(checkpoint: Path, config: dict, folder: Path) -> Path:
    """The checkpoint as the builder reads it right: a folder of links to its files, with a
    config.json that also says ``original_max_position_embeddings`` at its top level when only
    ``rope_scaling`` says it (Llama 3.1 and 3.2). The builder looks for it there alone, and
    otherwise scales the frequencies from the full context length: wrong RoPE (validation
    caught 2e-2 in Llama 3.2 1B's keys)."""
    from runtime.bundle import write_json_atomic

    folder.mkdir()
    for entry in sorted(os.scandir(checkpoint), key=lambda entry: entry.name):
        if entry.name != "config.json" and entry.is_file():
            os.symlink(os.path.abspath(entry.path), folder / entry.name)
    scaling = config.get("rope_scaling")
    original = scaling.get("original_max_position_embeddings") if isinstance(scaling, dict) \
        else None
    if original is not None and "original_max_position_embeddings" not in config:
        config = {**config, "original_max_position_embeddings": original}
    write_json_atomic(folder / "config.json", config)
    return folder


def reference_attention(config: dict) -> dict:
    """How PyTorch computes the attention the llm graph is validated against: eager where the
    model soft-caps its attention logits (Gemma 2). GroupQueryAttention soft-caps as the model
    defines and eager attention computes; transformers' default (sdpa) leaves the cap out, and
    differs from both (by 1e-2 in the tiny Gemma 2's logits)."""
    return {"attn_implementation": "eager"} if config.get("attn_logit_softcapping") else {}


def _attention_nodes(model, config: dict) -> list:
    """The graph's GroupQueryAttention nodes, one per layer in layer order."""
    nodes = [node for node in model.graph.node if node.op_type == "GroupQueryAttention"]
    layers = config.get("num_hidden_layers")
    if len(nodes) != layers:
        raise ExportError(
            f"The llm graph has {len(nodes)} attention layers, and config.json's "
            f"num_hidden_layers says {layers!r}. Note: the checkpoint's config does not match "
            "its weights.")
    return nodes


def _set_attribute(node, name: str, value) -> None:
    import onnx

    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, onnx.helper.make_attribute(name, value)])


def _windows_as_configured(nodes: list, config: dict) -> None:
    """Each layer's attention window as config.json's ``layer_types`` says: the builder gives
    Gemma 2's sliding window to its odd layers, where transformers (and the checkpoints) have
    it on the even ones."""
    kinds = config.get("layer_types")
    window = config.get("sliding_window")
    if not isinstance(kinds, list) or not isinstance(window, int) or len(kinds) != len(nodes):
        return
    for node, kind in zip(nodes, kinds):
        _set_attribute(node, "local_window_size", window if kind == "sliding_attention" else -1)


def _plain_no_rope_layers(model, nodes: list, config: dict) -> None:
    """SmolLM3's layers without RoPE (``no_rope_layers`` 0) attend to plain queries and keys:
    the builder turns their fused rotary off but then puts explicit RotaryEmbedding nodes in
    front of them, reading a position_ids the graph does not take (ONNX Runtime refuses to
    load it). Those nodes are bypassed and dropped."""
    flags = config.get("no_rope_layers")
    if not isinstance(flags, list) or len(flags) != len(nodes):
        return
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    for node, uses_rope in zip(nodes, flags):
        if uses_rope:
            continue
        for slot in (0, 1):  # the query (packed with key and value), the key
            source = producers.get(node.input[slot]) if slot < len(node.input) else None
            if source is not None and source.op_type == "RotaryEmbedding":
                node.input[slot] = source.input[0]
        _set_attribute(node, "do_rotary", 0)
    while True:  # drop what nothing reads any more
        read = {name for node in graph.node for name in node.input}
        read |= {output.name for output in graph.output}
        dead = [node for node in graph.node if not any(o in read for o in node.output if o)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


# precision -> (the builder's precision and execution provider, the validation's tolerance
# relative to the logits' scale). fp16 is the GPU graph: weights, activations and the cache in
# float16 (the builder's CUDA layout; ONNX Runtime's CPU runs it too, which is how it is
# validated here). Measured on the tiny models: fp16 logits within 0.03 of fp32 PyTorch's
# (1e-2 of their scale), the cache within 0.016.
LLM_PRECISIONS = {"fp32": ("fp32", "cpu", 1e-4), "fp16": ("fp16", "cuda", 1e-2)}


def build_llm_graph(checkpoint: str | os.PathLike, target: Path, *, precision: str = "fp32",
                    progress: Callable[[str], None] | None = None) -> dict:
    """Build the llm graph of ``checkpoint`` at ``target`` (its weights in ``target.name +
    "_data"`` beside it) at ``precision`` (a key of LLM_PRECISIONS), validated against PyTorch
    in fp32 at batch 1, two prompt lengths, with and without the cache; return what was built
    (the manifest's record)."""
    from .build import (
        _check_weight_indexes,
        _quiet_tracing,
        _read_config,
        _require_export_extra,
        resolve_checkpoint,
    )
    from .configs.decoders import check_rope_scaling
    from .validate import validate_decoder

    if precision not in LLM_PRECISIONS:
        raise ExportError(f"The llm graph is built in {' or '.join(LLM_PRECISIONS)}, not "
                          f"{str(precision)[:20]!r}.")
    built_as, provider, atol = LLM_PRECISIONS[precision]
    say = progress or (lambda line: None)
    _require_export_extra()
    builder = _require_builder()
    checkpoint = resolve_checkpoint(checkpoint)
    config = _read_config(checkpoint)  # the checkpoint's files checked as the export checks them
    _check_weight_indexes(checkpoint)
    check_llm_config(config)
    check_rope_scaling(config)
    target = Path(target)
    work = Path(tempfile.mkdtemp(prefix=".llm-", dir=target.parent))
    try:
        say(f"building the {precision} GroupQueryAttention graph of {checkpoint} with "
            "onnxruntime-genai")
        output = io.StringIO()
        source = _builder_view(checkpoint, config, work / "checkpoint")
        try:
            # its progress bars and notes: the export prints its own steps
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), \
                    _quiet_tracing():
                builder.create_model(None, str(source), str(work / "built"), built_as, provider,
                                     str(work / "cache"), hf_remote=False, hf_token="false",
                                     filename="model.onnx")
        except Exception as exc:
            raise ExportError(
                f"onnxruntime-genai's builder failed on {checkpoint}: "
                f"{str(exc).strip()[:300]}. Note: the llm graph is made for "
                f"{', '.join(LLM_MODEL_TYPES)} checkpoints saved by transformers."
            ) from None
        built = work / "built" / "model.onnx"
        import onnx
        import transformers

        model = onnx.load(str(built))
        gqa = _attention_nodes(model, config)
        _windows_as_configured(gqa, config)
        _plain_no_rope_layers(model, gqa, config)
        onnx.save_model(model, str(target), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=target.name + "_data",
                        size_threshold=1024)
        del model
        say("validating the llm graph against PyTorch at batch 1, with and without the cache")
        with _quiet_tracing():
            reference = transformers.AutoModelForCausalLM.from_pretrained(
                str(checkpoint), dtype="float32", **reference_attention(config)).eval()
            report = validate_decoder(reference, target, atol=atol, batch_sizes=_BATCH_SIZES)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"builder": f"onnxruntime-genai {metadata.version('onnxruntime-genai')}",
            "attention": "GroupQueryAttention", "kv_cache": "shared-buffer",
            "kv_cache_dtype": "float16" if precision == "fp16" else "float32", "padding": False,
            "validation": {"reference": "pytorch", **reference_attention(config),
                           "batch_sizes": list(_BATCH_SIZES),
                           "atol": report["atol"], "max_abs_diff": report["max_abs_diff"]}}
