"""Architectures are rows: every fact edgeport needs about one architecture lives in its row.

A row names the HF ``model_type``, its family (which decides the graphs and the preprocessing),
the tasks edgeport exports it for, and the validation tolerance. optimum-onnx does the tracing;
a row only says what to ask of it. Families with one graph, ``model``: "text-encoder",
"image-encoder", "text-image", "audio-encoder", "visual-text-encoder" (VisualBERT: a text beside
region features the caller gives) and "trajectory" (Decision Transformer); "decoder" (one graph
with a KV cache); "encoder-decoder" (``encoder_model`` and ``decoder_model_merged``, the decoder
with and without its KV cache; the encoder reads text, audio features for Whisper and
Speech2Text, or images for TrOCR and Donut). The modality ("text", "image", "text-image",
"audio", "trajectory": a Decision Transformer's states, actions and returns) decides the
preprocessing files and the validation inputs.
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
    # The text rows are each image's own queries, image after image (OWL-ViT's detection
    # heads): input_ids has batch x num_queries rows, and validation feeds it so.
    queries_per_image: bool = False
    # task -> transformers class, where the task's auto class does not load this architecture.
    model_classes: tuple[tuple[str, str], ...] = ()
    # task -> optimum-onnx's name for it, where the names differ.
    optimum_tasks: tuple[tuple[str, str], ...] = ()
    # A composite model (vision-encoder-decoder): its config's part -> the model_types of that
    # part edgeport exports, and task -> the encoder model_types the task takes (transformers'
    # document-question-answering takes Donut's only). Other parts are refused at export.
    components: tuple[tuple[str, tuple[str, ...]], ...] = ()
    task_encoders: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def model_class(self, task: str) -> str:
        from runtime.tasks import TASK_MODEL_CLASSES

        classes = dict(self.model_classes)
        return classes[task] if task in classes else TASK_MODEL_CLASSES[task]

    def optimum_task(self, task: str) -> str:
        return dict(self.optimum_tasks).get(task, task)

    @property
    def graphs(self) -> tuple[str, ...]:
        return FAMILY_GRAPHS.get(self.family, ("model",))

    def check_components(self, config: dict, task: str) -> None:
        """An ExportError when a composite model's parts (config.json's encoder and decoder)
        are of a kind this row does not export, or the task does not take its encoder."""
        for part, supported in self.components:
            section = config.get(part)
            kind = section.get("model_type") if isinstance(section, dict) else None
            if kind not in supported:
                raise ExportError(
                    f"edgeport exports {self.model_type} models with a {part} of the kinds "
                    f"{', '.join(supported)}; this checkpoint's {part} is "
                    f"{repr(kind)[:80]}. Note: config.json's \"{part}\" names it in its "
                    "\"model_type\"; other pairs are not supported yet.")
        encoders = dict(self.task_encoders).get(task)
        kind = (config.get("encoder") or {}).get("model_type")
        if encoders is not None and kind not in encoders:
            raise ExportError(
                f"{task} takes {self.model_type} models with a {' or '.join(encoders)} "
                f"encoder (Donut), as transformers' pipeline does; this checkpoint's encoder is "
                f"{repr(kind)[:80]}. Note: export it for image-to-text instead.")


def _image(model_type: str, task: str, **facts) -> Architecture:
    return Architecture(model_type, "image-encoder", (task,), modality="image", **facts)


def _encoder(model_type: str, **facts) -> Architecture:
    """An image encoder: its classifier, and its features (the bare model's hidden states, which
    optimum traces as feature-extraction; exporter/configs/image_features.py adds the pooler's)."""
    return Architecture(model_type, "image-encoder", (_CLASSIFY, _FEATURES), modality="image",
                        optimum_tasks=((_FEATURES, "feature-extraction"),), **facts)


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
_IMAGE_TO_TEXT, _DOCUMENT_QA = "image-to-text", "document-question-answering"
_VQA = "visual-question-answering"
_FEATURES = "image-feature-extraction"
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
        # Long-document encoders (exporter/configs/longformer.py, big_bird.py, xlnet.py).
        # Longformer: sliding-window attention patched to trace at any length; global attention
        # as its heads set it (question tokens for QA, <s> for classification), fed by the
        # runtime from the manifest. BigBird: exported with full attention (original_full), as
        # transformers runs inputs of up to (5 + 2 * num_random_blocks) * block_size tokens.
        Architecture("longformer", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("big_bird", "text-encoder", TEXT_ENCODER_TASKS),
        # XLNet: no fill-mask (a permutation LM); left padding, <sep> <cls> at the end.
        Architecture("xlnet", "text-encoder", TEXT_ENCODER_TASKS[:3] + ("feature-extraction",)),
        _decoder("gpt2"),
        # The seeds' decoder family, and today's small edge LLMs (grouped-query attention, RoPE,
        # sliding windows, ALiBi: all in the traced graph).
        *(_decoder(model_type) for model_type in (
            "gptj", "gpt_neo", "gpt_neox", "opt", "bloom", "llama", "mistral", "qwen2", "qwen3",
            "smollm3", "phi3", "gemma2", "gemma3_text")),
        _encoder_decoder("bart"),
        _encoder_decoder("pegasus"),
        _encoder_decoder("t5"),
        # translation: mBART's language codes (src_lang, tgt_lang) and Marian's two
        # sentencepiece models, converted to one tokenizer.json (exporter/marian_tokenizer.py)
        _encoder_decoder("mbart"),
        _encoder_decoder("marian"),
        _encoder("vit", fixed_image_size=True),
        _encoder("deit", fixed_image_size=True),
        _encoder("beit", fixed_image_size=True),
        _encoder("data2vec-vision", fixed_image_size=True),
        _encoder("vit_msn", fixed_image_size=True),
        _encoder("convnext"),
        _encoder("convnextv2"),
        _encoder("resnet"),
        _encoder("regnet"),
        # Swin's classifier picks its window size and shift from the input size in Python, so a
        # trace holds for the traced size only (its backbone in Mask2Former is patched instead).
        _encoder("swin", fixed_image_size=True),
        # LeViT's attention biases are tables for one resolution; CvT's convolutional
        # embeddings and projections take any size.
        _encoder("levit", fixed_image_size=True),
        _encoder("cvt"),
        # Masked-autoencoder pretraining: features only, every patch kept and in order (its
        # random masking is patched out at export: exporter/configs/image_features.py).
        _image("vit_mae", _FEATURES, fixed_image_size=True,
               optimum_tasks=((_FEATURES, "feature-extraction"),)),
        # Classifies color-cluster ids (input_ids, made by its processor), not pixels.
        _image("imagegpt", _CLASSIFY),
        _image("detr", _DETECT),
        _image("table-transformer", _DETECT),
        _image("yolos", _DETECT),
        _image("segformer", _SEGMENT, **_SEMANTIC),
        _image("mask2former", _SEGMENT, min_opset=16,  # GridSample; exporter/configs/
               model_classes=((_SEGMENT, "AutoModelForUniversalSegmentation"),)),
        # Mask2Former's outputs, without its 384 x 384 mask upscaling; exporter/configs/
        _image("maskformer", _SEGMENT,
               model_classes=((_SEGMENT, "AutoModelForUniversalSegmentation"),)),
        _image("glpn", _DEPTH),
        _image("dpt", _DEPTH, fixed_image_size=True),
        Architecture("clip", "text-image", ("zero-shot-image-classification",),
                     modality="text-image", fixed_image_size=True),
        # Open-vocabulary detection: a box and a score for every text query at every patch.
        *(Architecture(model_type, "text-image", ("zero-shot-object-detection",),
                       modality="text-image", fixed_image_size=True, queries_per_image=True)
          for model_type in ("owlvit", "owlv2")),
        # Visual question answering: a text and an image in one transformer, answers as
        # classes (exporter/configs/vilt.py keeps every patch: deterministic, any image size).
        Architecture("vilt", "text-image", (_VQA,), modality="text-image",
                     model_classes=((_VQA, "ViltForQuestionAnswering"),)),
        # A text beside region features the caller gives (a detector's): no image processor
        # (exporter/configs/visual_bert.py; runtime/tasks/visual_feature_extraction.py).
        Architecture("visual_bert", "visual-text-encoder", ("feature-extraction",)),
        _audio_encoder("wav2vec2"),
        _audio_encoder("hubert"),
        # Offline reinforcement learning: the next action from a trajectory's states, actions
        # and returns-to-go (exporter/configs/decision_transformer.py makes it traceable).
        Architecture("decision_transformer", "trajectory", ("reinforcement-learning",),
                     modality="trajectory",
                     model_classes=(("reinforcement-learning", "DecisionTransformerModel"),)),
        # TrOCR (a ViT or DeiT encoder, a TrOCR decoder) and Donut (a Swin encoder, an mBART
        # decoder): images to text. The encoders' position embeddings (ViT, DeiT) and windows
        # (Swin, whose trace bakes the traced size) take one image size.
        Architecture("vision-encoder-decoder", "encoder-decoder",
                     (_IMAGE_TO_TEXT, _DOCUMENT_QA), modality="image", fixed_image_size=True,
                     model_classes=((_IMAGE_TO_TEXT, "VisionEncoderDecoderModel"),
                                    (_DOCUMENT_QA, "VisionEncoderDecoderModel")),
                     optimum_tasks=((_IMAGE_TO_TEXT, "image-to-text-with-past"),
                                    (_DOCUMENT_QA, "image-to-text-with-past")),
                     components=(("encoder", ("vit", "deit", "donut-swin")),
                                 ("decoder", ("trocr", "mbart"))),
                     task_encoders=((_DOCUMENT_QA, ("donut-swin",)),)),
        Architecture("whisper", "encoder-decoder", (ASR,), modality="audio",
                     fixed_encoder_sequence=True,
                     model_classes=((ASR, "AutoModelForSpeechSeq2Seq"),),
                     optimum_tasks=((ASR, "automatic-speech-recognition-with-past"),)),
        # Speech2Text: Kaldi filterbanks of any length, with a mask (the decoder takes the
        # features' mask too, and shortens it to the encoder's length in the graph).
        Architecture("speech_to_text", "encoder-decoder", (ASR,), modality="audio",
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
# Text-image rows first try these: their question answering is about an image, and their object
# detection finds what text queries name (OWL-ViT).
_TEXT_IMAGE_HEAD_TASKS = (("ForQuestionAnswering", _VQA),
                          ("ForObjectDetection", "zero-shot-object-detection"))
# The same for audio rows, where a sequence classifier labels clips and a conditional generator
# transcribes.
_AUDIO_HEAD_TASKS = (
    ("ForCTC", ASR),
    ("ForSequenceClassification", AUDIO_CLASSIFICATION),
    ("ForAudioClassification", AUDIO_CLASSIFICATION),
    ("ForConditionalGeneration", ASR),
)
# Image rows first try these: LeViT's and DeiT's distilled classifiers, MaskFormer's segmenter,
# and the bare or pretraining models, whose task is image-feature-extraction.
_IMAGE_HEAD_TASKS = (
    ("ForImageClassificationWithTeacher", _CLASSIFY),
    ("ForInstanceSegmentation", _SEGMENT),
    ("ForPreTraining", _FEATURES),
    ("Model", _FEATURES),
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
    >>> infer_task({"model_type": "vilt", "architectures": ["ViltForQuestionAnswering"]})
    'visual-question-answering'
    """
    row = architecture_for(config.get("model_type"))
    if sentence_transformers:
        return "feature-extraction"
    heads = _AUDIO_HEAD_TASKS if row.modality == "audio" else _HEAD_TASKS
    if row.modality == "text-image":
        heads = _TEXT_IMAGE_HEAD_TASKS + heads
    if row.modality == "image":
        heads = _IMAGE_HEAD_TASKS + heads
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
