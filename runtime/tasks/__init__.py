"""The task table: Hugging Face pipeline tag -> the pipeline class that serves it.

One module per task; this table is the only registry. Task names are HF pipeline tags verbatim,
listed in ``runtime.task_names`` (with their aliases and ``canonical_task``) below the bundle.

May import every layer below: the bundle, ``backends`` (engines by backend name), ``text``,
``vision``, ``audio``, ``generation``; never ``runtime.pipeline`` or ``runtime.cli``.
Where a task runs differently for another family of models, ``FAMILY_PIPELINES`` names the
class for that family (speech recognition: CTC models classify frames, Whisper generates).
"""

from __future__ import annotations

from ..task_names import canonical_task
from .audio_classification import AudioClassificationPipeline
from .automatic_speech_recognition import (
    AutomaticSpeechRecognitionPipeline,
    WhisperSpeechRecognitionPipeline,
)
from .base import Pipeline
from .depth_estimation import DepthEstimationPipeline
from .feature_extraction import FeatureExtractionPipeline
from .fill_mask import FillMaskPipeline
from .image_classification import ImageClassificationPipeline
from .image_segmentation import ImageSegmentationPipeline
from .object_detection import ObjectDetectionPipeline
from .question_answering import QuestionAnsweringPipeline
from .summarization import SummarizationPipeline
from .text2text_generation import Text2TextGenerationPipeline
from .text_classification import TextClassificationPipeline
from .text_generation import TextGenerationPipeline
from .token_classification import TokenClassificationPipeline
from .translation import TranslationPipeline
from .zero_shot_image_classification import ZeroShotImageClassificationPipeline

TASKS: dict[str, type[Pipeline]] = {
    "text-classification": TextClassificationPipeline,
    "token-classification": TokenClassificationPipeline,
    "question-answering": QuestionAnsweringPipeline,
    "fill-mask": FillMaskPipeline,
    "feature-extraction": FeatureExtractionPipeline,
    "image-classification": ImageClassificationPipeline,
    "object-detection": ObjectDetectionPipeline,
    "image-segmentation": ImageSegmentationPipeline,
    "depth-estimation": DepthEstimationPipeline,
    "zero-shot-image-classification": ZeroShotImageClassificationPipeline,
    "text-generation": TextGenerationPipeline,
    "text2text-generation": Text2TextGenerationPipeline,
    "summarization": SummarizationPipeline,
    "translation": TranslationPipeline,
    "automatic-speech-recognition": AutomaticSpeechRecognitionPipeline,
    "audio-classification": AudioClassificationPipeline,
}

# (task, bundle family) -> the class that serves the task for that family instead of TASKS'.
FAMILY_PIPELINES: dict[tuple[str, str], type[Pipeline]] = {
    ("automatic-speech-recognition", "encoder-decoder"): WhisperSpeechRecognitionPipeline,
}

# The transformers auto class that loads a checkpoint for each task: names only, used by the
# exporter and by compare's optional PyTorch reference (the runtime itself never loads them).
TASK_MODEL_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "fill-mask": "AutoModelForMaskedLM",
    "feature-extraction": "AutoModel",
    "image-classification": "AutoModelForImageClassification",
    "object-detection": "AutoModelForObjectDetection",
    "image-segmentation": "AutoModelForImageSegmentation",
    "depth-estimation": "AutoModelForDepthEstimation",
    "zero-shot-image-classification": "AutoModelForZeroShotImageClassification",
    "text-generation": "AutoModelForCausalLM",
    "text2text-generation": "AutoModelForSeq2SeqLM",
    "summarization": "AutoModelForSeq2SeqLM",
    "translation": "AutoModelForSeq2SeqLM",
    "automatic-speech-recognition": "AutoModelForCTC",
    "audio-classification": "AutoModelForAudioClassification",
}

def pipeline_class(task: str, family: str | None) -> type[Pipeline]:
    """The class that runs ``task`` (a pipeline tag) on a bundle of ``family``.

    >>> pipeline_class("automatic-speech-recognition", "encoder-decoder").__name__
    'WhisperSpeechRecognitionPipeline'
    """
    return FAMILY_PIPELINES.get((task, family), TASKS[canonical_task(task)])
