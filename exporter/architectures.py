"""Architectures are rows: every fact edgeport needs about one architecture lives in its row.

A row names the HF ``model_type``, its family (which decides the graphs and the preprocessing),
the tasks edgeport exports it for, and the validation tolerance. optimum-onnx does the tracing;
a row only says what to ask of it. Families: "text-encoder", "image-encoder", "text-image",
"audio-encoder" (one graph, ``model``), "decoder" (one graph with a KV cache) and
"encoder-decoder" (``encoder_model`` and ``decoder_model_merged``, the decoder with and without
its KV cache; the encoder reads text, or audio features for Whisper). The modality ("text",
"image", "text-image", "audio") decides the preprocessing files and the validation inputs.
Every row has a test case (tests/exporter/test_coverage.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import ExportError, did_you_mean

TEXT_ENCODER_TASKS = (
    "text-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
    "feature-extraction",
)
TEXT2TEXT_TASKS = ("text2text-generation", "summarization", "translation")
ASR, AUDIO_CLASSIFICATION = "automatic-speech-recognition", "audio-classification"

# The graphs of a family's bundle, named by their file stems in onnx/ (Transformers.js's
# layout); variants add a suffix to the stem. Families not listed have one graph, "model".
FAMILY_GRAPHS = {"encoder-decoder": ("encoder_model", "decoder_model_merged")}


@dataclass(frozen=True)
class Architecture:
    model_type: str
    family: str
    tasks: tuple[str, ...]
    modality: str = "text"
    atol: float = 1e-4  # max abs difference ONNX vs PyTorch that validation accepts
    min_opset: int = 14
    # The image size is baked into the model (absolute position embeddings without
    # interpolation): the graph's height and width are made static at export.
    fixed_image_size: bool = False
    # The encoder takes one input length (Whisper: 30 s of features, 1500 positions out): the
    # decoder's encoder_hidden_states are made static at config.max_source_positions.
    fixed_encoder_sequence: bool = False
    # task -> transformers class, where the task's auto class does not load this architecture.
    model_classes: tuple[tuple[str, str], ...] = ()
    # task -> optimum-onnx's name for it, where the names differ.
    optimum_tasks: tuple[tuple[str, str], ...] = ()

    def model_class(self, task: str) -> str:
        from runtime.tasks import TASK_MODEL_CLASSES

        classes = dict(self.model_classes)
        return classes[task] if task in classes else TASK_MODEL_CLASSES[task]

    def optimum_task(self, task: str) -> str:
        return dict(self.optimum_tasks).get(task, task)

    @property
    def graphs(self) -> tuple[str, ...]:
        return FAMILY_GRAPHS.get(self.family, ("model",))


def _image(model_type: str, task: str, **facts) -> Architecture:
    return Architecture(model_type, "image-encoder", (task,), modality="image", **facts)


def _decoder(model_type: str, **facts) -> Architecture:
    """A decoder-only LM, traced by optimum with its KV cache: one graph taking
    past_key_values.* (zero-length at the first step) and giving present.*."""
    task = "text-generation"
    return Architecture(model_type, "decoder", (task,),
                        model_classes=((task, "AutoModelForCausalLM"),),
                        optimum_tasks=((task, "text-generation-with-past"),), **facts)


def _encoder_decoder(model_type: str, **facts) -> Architecture:
    """A sequence-to-sequence LM: the encoder, and the decoder with and without its KV cache
    merged by optimum into one graph (an If on use_cache_branch)."""
    return Architecture(
        model_type, "encoder-decoder", TEXT2TEXT_TASKS,
        model_classes=tuple((task, "AutoModelForSeq2SeqLM") for task in TEXT2TEXT_TASKS),
        optimum_tasks=tuple((task, "text2text-generation-with-past") for task in TEXT2TEXT_TASKS),
        **facts)


def _audio_encoder(model_type: str, **facts) -> Architecture:
    """A speech encoder on the raw 16 kHz waveform (a convolution stack, then a transformer):
    CTC logits per 20 ms frame for speech recognition, or one clip's labels."""
    return Architecture(
        model_type, "audio-encoder", (ASR, AUDIO_CLASSIFICATION), modality="audio",
        model_classes=((ASR, "AutoModelForCTC"),
                       (AUDIO_CLASSIFICATION, "AutoModelForAudioClassification")), **facts)


_CLASSIFY, _DETECT, _SEGMENT, _DEPTH = (
    "image-classification", "object-detection", "image-segmentation", "depth-estimation")
_SEMANTIC = dict(model_classes=((_SEGMENT, "AutoModelForSemanticSegmentation"),),
                 optimum_tasks=((_SEGMENT, "semantic-segmentation"),))

ARCHITECTURES: dict[str, Architecture] = {
    row.model_type: row
    for row in (
        Architecture("bert", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("distilbert", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("roberta", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("xlm-roberta", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("albert", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("deberta-v2", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("mpnet", "text-encoder", TEXT_ENCODER_TASKS),
        _decoder("gpt2"),
        # The seeds' decoder family, and today's small edge LLMs (grouped-query attention, RoPE,
        # sliding windows, ALiBi: all in the traced graph).
        *(_decoder(model_type) for model_type in (
            "gptj", "gpt_neo", "gpt_neox", "opt", "bloom", "llama", "mistral", "qwen2", "qwen3",
            "smollm3", "phi3", "gemma2", "gemma3_text")),
        _encoder_decoder("bart"),
        _encoder_decoder("pegasus"),
        _encoder_decoder("t5"),
        _image("vit", _CLASSIFY, fixed_image_size=True),
        _image("deit", _CLASSIFY, fixed_image_size=True),
        _image("beit", _CLASSIFY, fixed_image_size=True),
        _image("data2vec-vision", _CLASSIFY, fixed_image_size=True),
        _image("vit_msn", _CLASSIFY, fixed_image_size=True),
        _image("convnext", _CLASSIFY),
        _image("convnextv2", _CLASSIFY),
        _image("resnet", _CLASSIFY),
        _image("regnet", _CLASSIFY),
        # Swin's classifier picks its window size and shift from the input size in Python, so a
        # trace holds for the traced size only (its backbone in Mask2Former is patched instead).
        _image("swin", _CLASSIFY, fixed_image_size=True),
        _image("detr", _DETECT),
        _image("table-transformer", _DETECT),
        _image("yolos", _DETECT),
        _image("segformer", _SEGMENT, **_SEMANTIC),
        _image("mask2former", _SEGMENT, min_opset=16,  # GridSample; exporter/configs/
               model_classes=((_SEGMENT, "AutoModelForUniversalSegmentation"),)),
        _image("glpn", _DEPTH),
        _image("dpt", _DEPTH, fixed_image_size=True),
        Architecture("clip", "text-image", ("zero-shot-image-classification",),
                     modality="text-image", fixed_image_size=True),
        _audio_encoder("wav2vec2"),
        _audio_encoder("hubert"),
        Architecture("whisper", "encoder-decoder", (ASR,), modality="audio",
                     fixed_encoder_sequence=True,
                     model_classes=((ASR, "AutoModelForSpeechSeq2Seq"),),
                     optimum_tasks=((ASR, "automatic-speech-recognition-with-past"),)),
    )
}


# Suffix of the class named in config.json's "architectures" -> the task it was trained for.
_HEAD_TASKS = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForPreTraining", "fill-mask"),
    ("ForImageClassification", "image-classification"),
    ("ForObjectDetection", "object-detection"),
    ("ForSemanticSegmentation", "image-segmentation"),
    ("ForUniversalSegmentation", "image-segmentation"),
    ("ForDepthEstimation", "depth-estimation"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("Model", "feature-extraction"),
)
# The same for audio rows, where a sequence classifier labels clips and a conditional generator
# transcribes.
_AUDIO_HEAD_TASKS = (
    ("ForCTC", ASR),
    ("ForSequenceClassification", AUDIO_CLASSIFICATION),
    ("ForAudioClassification", AUDIO_CLASSIFICATION),
    ("ForConditionalGeneration", ASR),
)


def architecture_for(model_type: str) -> Architecture:
    """The row of a model_type; an ExportError naming the supported ones otherwise."""
    if not isinstance(model_type, str) or model_type not in ARCHITECTURES:
        raise ExportError(
            f"edgeport cannot export model_type {repr(model_type)[:80]} yet. "
            + did_you_mean(str(model_type)[:80], ARCHITECTURES)
        )
    return ARCHITECTURES[model_type]


def infer_task(config: dict, *, sentence_transformers: bool = False) -> str:
    """The task a checkpoint was made for, from its config's ``architectures``.

    >>> infer_task({"model_type": "bert", "architectures": ["BertForTokenClassification"]})
    'token-classification'
    >>> infer_task({"model_type": "clip", "architectures": ["CLIPModel"]})
    'zero-shot-image-classification'
    >>> infer_task({"model_type": "t5", "architectures": ["T5WithLMHeadModel"]})
    'text2text-generation'
    >>> infer_task({"model_type": "hubert", "architectures": ["HubertForSequenceClassification"]})
    'audio-classification'
    """
    row = architecture_for(config.get("model_type"))
    if sentence_transformers:
        return "feature-extraction"
    heads = _AUDIO_HEAD_TASKS if row.modality == "audio" else _HEAD_TASKS
    for name in config.get("architectures") or []:
        for suffix, task in heads:
            if name.endswith(suffix):
                if suffix in ("Model", "LMHeadModel") and task not in row.tasks:
                    # a bare model with its own head-free task (CLIP), or an old name of a
                    # seq2seq LM (T5WithLMHeadModel)
                    return row.tasks[0]
                return task
    raise ExportError(
        f"Cannot tell the task from config.json (architectures: {config.get('architectures')}). "
        f"Note: pass --task, one of: {', '.join(row.tasks)}."
    )
