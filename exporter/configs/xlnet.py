"""XLNet: optimum-onnx has no config for it; this one traces its encoder heads.

XLNet reads ``input_ids``, ``attention_mask`` and ``token_type_ids`` (its segments, compared
position by position: a relative segment encoding), with its relative positions computed from
the length in the graph. Its memory of past segments (``mems``) is for long-text language
modelling: the graph is traced without it (``use_mems_eval`` off), as transformers' pipelines
never pass one back. The heads served are those transformers' pipelines load for XLNet:
sequence and token classification, the simple span head for question answering
(``XLNetForQuestionAnsweringSimple``, which AutoModelForQuestionAnswering loads) and the bare
model. There is no fill-mask: XLNet is a permutation language model, which
AutoModelForMaskedLM does not load.

The tokenizer pads on the left and ends every text with ``<sep> <cls>`` (segment 2 for <cls>),
and the classifier reads the last position (``summary_type="last"``, in the graph): the bundle's
tokenizer.json is converted from the checkpoint's sentencepiece model at export, and the
exporter writes XLNet's padding side (a class attribute transformers does not save) into the
bundle's tokenizer_config.json, which the runtime pads by.
"""

from __future__ import annotations

from optimum.exporters.onnx.config import TextEncoderOnnxConfig
from optimum.utils import DEFAULT_DUMMY_SHAPES, NormalizedTextConfig
from optimum.utils.input_generators import DummyTextInputGenerator

TASKS = ("text-classification", "token-classification", "question-answering",
         "feature-extraction")


class _SegmentsGenerator(DummyTextInputGenerator):
    """optimum's text inputs, with segment ids 0 then 1 (XLNet has two segments and <cls>'s
    own, 2; optimum's random ids would index past them in other models, not here)."""

    def __init__(self, task, normalized_config, batch_size=DEFAULT_DUMMY_SHAPES["batch_size"],
                 sequence_length=DEFAULT_DUMMY_SHAPES["sequence_length"], **kwargs):
        super().__init__(task, normalized_config, batch_size=batch_size,
                         sequence_length=sequence_length, **kwargs)

    def generate(self, input_name, framework="pt", int_dtype="int64", float_dtype="fp32"):
        if input_name == "token_type_ids":
            import torch

            types = torch.zeros((self.batch_size, self.sequence_length), dtype=torch.int64)
            types[:, self.sequence_length // 2:] = 1
            types[:, -1] = 2
            return types
        return super().generate(input_name, framework=framework, int_dtype=int_dtype,
                                float_dtype=float_dtype)


class XLNetOnnxConfig(TextEncoderOnnxConfig):
    NORMALIZED_CONFIG_CLASS = NormalizedTextConfig.with_args(
        hidden_size="d_model", num_layers="n_layer", num_attention_heads="n_head",
        allow_new=True)
    DUMMY_INPUT_GENERATOR_CLASSES = (_SegmentsGenerator,)

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        axes = {0: "batch_size", 1: "sequence_length"}
        return {"input_ids": axes, "attention_mask": dict(axes), "token_type_ids": dict(axes)}

    @property
    def values_override(self) -> dict:
        return {"use_mems_eval": False}
