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
from .document_question_answering import DocumentQuestionAnsweringPipeline
from .feature_extraction import FeatureExtractionPipeline
from .fill_mask import FillMaskPipeline
from .image_classification import ImageClassificationPipeline
from .image_feature_extraction import ImageFeatureExtractionPipeline
from .image_segmentation import ImageSegmentationPipeline
from .image_to_text import ImageToTextPipeline
from .object_detection import ObjectDetectionPipeline
from .question_answering import QuestionAnsweringPipeline
from .reinforcement_learning import ReinforcementLearningPipeline
from .speech_to_text import Speech2TextSpeechRecognitionPipeline
from .summarization import SummarizationPipeline
from .text2text_generation import Text2TextGenerationPipeline
from .text_classification import TextClassificationPipeline
from .text_generation import TextGenerationPipeline
from .token_classification import TokenClassificationPipeline
from .translation import TranslationPipeline
from .visual_feature_extraction import VisualFeatureExtractionPipeline
from .visual_question_answering import VisualQuestionAnsweringPipeline
from .zero_shot_image_classification import ZeroShotImageClassificationPipeline
from .zero_shot_object_detection import ZeroShotObjectDetectionPipeline

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
    "zero-shot-object-detection": ZeroShotObjectDetectionPipeline,
    "text-generation": TextGenerationPipeline,
    "text2text-generation": Text2TextGenerationPipeline,
    "summarization": SummarizationPipeline,
    "translation": TranslationPipeline,
    "automatic-speech-recognition": AutomaticSpeechRecognitionPipeline,
    "audio-classification": AudioClassificationPipeline,
    "image-feature-extraction": ImageFeatureExtractionPipeline,
    "image-to-text": ImageToTextPipeline,
    "document-question-answering": DocumentQuestionAnsweringPipeline,
    "visual-question-answering": VisualQuestionAnsweringPipeline,
    "reinforcement-learning": ReinforcementLearningPipeline,
}

# (task, bundle family) -> the class that serves the task for that family instead of TASKS'.
FAMILY_PIPELINES: dict[tuple[str, str], type[Pipeline]] = {
    ("automatic-speech-recognition", "encoder-decoder"): WhisperSpeechRecognitionPipeline,
    # VisualBERT: text beside region features the caller gives
    ("feature-extraction", "visual-text-encoder"): VisualFeatureExtractionPipeline,
}

# (task, model_type) -> the class that serves the task for that architecture, before
# FAMILY_PIPELINES: Speech2Text is an encoder-decoder like Whisper, without Whisper's prompt,
# windows and timestamps.
MODEL_TYPE_PIPELINES: dict[tuple[str, str], type[Pipeline]] = {
    ("automatic-speech-recognition", "speech_to_text"): Speech2TextSpeechRecognitionPipeline,
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
    "zero-shot-object-detection": "AutoModelForZeroShotObjectDetection",
    "text-generation": "AutoModelForCausalLM",
    "text2text-generation": "AutoModelForSeq2SeqLM",
    "summarization": "AutoModelForSeq2SeqLM",
    "translation": "AutoModelForSeq2SeqLM",
    "automatic-speech-recognition": "AutoModelForCTC",
    "audio-classification": "AutoModelForAudioClassification",
    "image-feature-extraction": "AutoModel",
    "image-to-text": "AutoModelForVision2Seq",
    "document-question-answering": "AutoModelForDocumentQuestionAnswering",
    "visual-question-answering": "AutoModelForVisualQuestionAnswering",
    "reinforcement-learning": "DecisionTransformerModel",  # transformers has no auto class
}

def pipeline_class(task: str, family: str | None,
                   model_type: str | None = None) -> type[Pipeline]:
    """The class that runs ``task`` (a pipeline tag) on a bundle of ``family`` (and
    ``model_type``, the manifest's).

    >>> pipeline_class("automatic-speech-recognition", "encoder-decoder").__name__
    'WhisperSpeechRecognitionPipeline'
    >>> pipeline_class("automatic-speech-recognition", "encoder-decoder", "speech_to_text").__name__
    'Speech2TextSpeechRecognitionPipeline'
    """
    if isinstance(model_type, str) and (task, model_type) in MODEL_TYPE_PIPELINES:
        return MODEL_TYPE_PIPELINES[task, model_type]
    return FAMILY_PIPELINES.get((task, family), TASKS[canonical_task(task)])
