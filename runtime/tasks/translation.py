"""The translation task: text2text-generation that names its results ``translation_text``.
``translation_xx_to_yy`` picks the task_specific_params (T5's "translate English to German: "
prefix) as transformers does."""

from __future__ import annotations

import re
from typing import ClassVar

from .text2text_generation import Text2TextGenerationPipeline

LANGUAGE_PAIR = re.compile(r"^translation_([A-Za-z-]+)_to_([A-Za-z-]+)$")


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
            params = kwargs.get("config", {}).get("task_specific_params") or {}
            task_name = next((key for key in params if LANGUAGE_PAIR.match(key)), task_name)
        super().__init__(task_name=task_name, **kwargs)
