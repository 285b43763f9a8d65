"""The translation task: text2text-generation that names its results ``translation_text``.
``translation_xx_to_yy`` picks the task_specific_params (T5's "translate English to German: "
prefix) as transformers does."""

from __future__ import annotations

from typing import ClassVar

from ..task_names import LANGUAGE_PAIR
from .generation import task_specific_params
from .text2text_generation import Text2TextGenerationPipeline


class TranslationPipeline(Text2TextGenerationPipeline):
    """``[{"translation_text": ...}]`` per text.

    >>> translate = pipeline("translation_en_to_de", model="t5-bundle")     # doctest: +SKIP
    >>> translate("How old are you?")                                        # doctest: +SKIP
    [{'translation_text': 'Wie alt sind Sie?'}]
    """

    task = "translation"
    return_name: ClassVar[str] = "translation"

    def __init__(self, *, task_name: str | None = None, **kwargs):
        if task_name in (None, "translation"):
            # transformers' pipeline("translation", ...) takes the model's first language pair
            params = task_specific_params(kwargs.get("config", {}))
            task_name = next((key for key in params if LANGUAGE_PAIR.match(key)), task_name)
        super().__init__(task_name=task_name, **kwargs)
