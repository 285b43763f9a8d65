"""The translation task: text2text-generation that names its results ``translation_text``.
``translation_xx_to_yy`` picks the task_specific_params (T5's "translate English to German: "
prefix) as transformers does. A multilingual model (mBART) takes ``src_lang`` and ``tgt_lang``
(language codes such as "en_XX"): the source code goes around the text, and the target code is
forced as the first generated token (runtime.text.languages); models with one language pair
ignore them, as in transformers."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import InputError
from ..task_names import LANGUAGE_PAIR
from ..text.languages import LanguageCodes
from .generation import task_specific_params
from .text import encode_texts
from .text2text_generation import Text2TextGenerationPipeline

_LANGUAGES = ("src_lang", "tgt_lang")


class TranslationPipeline(Text2TextGenerationPipeline):
    """``[{"translation_text": ...}]`` per text.

    >>> translate = pipeline("translation_en_to_de", model="t5-bundle")     # doctest: +SKIP
    >>> translate("How old are you?")                                        # doctest: +SKIP
    [{'translation_text': 'Wie alt sind Sie?'}]
    >>> translate = pipeline("translation", model="mbart-50-bundle")        # doctest: +SKIP
    >>> translate("How old are you?", src_lang="en_XX", tgt_lang="de_DE")    # doctest: +SKIP
    [{'translation_text': 'Wie alt bist du?'}]
    """

    task = "translation"
    return_name: ClassVar[str] = "translation"
    parameters = {**Text2TextGenerationPipeline.parameters, "src_lang": None, "tgt_lang": None}

    def __init__(self, *, task_name: str | None = None, **kwargs):
        if task_name in (None, "translation"):
            # transformers' pipeline("translation", ...) takes the model's first language pair
            params = task_specific_params(kwargs.get("config", {}))
            task_name = next((key for key in params if LANGUAGE_PAIR.match(key)), task_name)
        pair = LANGUAGE_PAIR.match(task_name or "")
        # transformers reads "translation_en_to_de" as src_lang="en", tgt_lang="de" wherever
        # neither is given: at pipeline(...) and at each call
        self._task_languages = dict(zip(_LANGUAGES, pair.groups())) if pair else {}
        init = {key: kwargs[key] for key in _LANGUAGES if kwargs.get(key) is not None}
        kwargs.update(init or self._task_languages)
        super().__init__(task_name=task_name, **kwargs)
        self.languages = LanguageCodes.from_tokenizer(self.tokenizer)

    def __call__(self, *args, **kwargs):
        given = {key: kwargs.pop(key) for key in _LANGUAGES if key in kwargs}
        kwargs.update({k: v for k, v in given.items() if v is not None} or self._task_languages)
        return super().__call__(*args, **kwargs)

    @property
    def saved_languages(self) -> dict:
        """The src_lang and tgt_lang a multilingual tokenizer was saved with
        (tokenizer_config.json), which calibration, compare and bench translate between: where
        it saved none, en_XX (or its first code) and the source's; empty for a model with one
        language pair. (Calls still name theirs, as in transformers.)"""
        if self.languages is None:
            return {}
        codes, config = self.languages.codes, self.tokenizer.config
        src, tgt = (config.get(key) if isinstance(config.get(key), str) else None
                    for key in _LANGUAGES)
        src = src if src in codes else "en_XX" if "en_XX" in codes else next(iter(codes))
        return {"src_lang": src, "tgt_lang": tgt if tgt in codes else src}

    def prepare(self, text: str, options, config):
        if self.languages is None:  # one language pair: src_lang and tgt_lang have no effect
            return super().prepare(text, options, config)
        src_lang, tgt_lang = options["src_lang"], options["tgt_lang"]
        if src_lang is None or tgt_lang is None:
            codes = sorted(self.languages.codes)
            example = {"src_lang": codes[0], "tgt_lang": codes[-1], **self.saved_languages}
            raise InputError(
                f"This {self.languages.tokenizer_class} translates between many languages: "
                "pass both src_lang and tgt_lang. Note: e.g. pipe(text, "
                f"src_lang={example['src_lang']!r}, tgt_lang={example['tgt_lang']!r}); its "
                f"language codes are: {', '.join(codes)}.")
        ids = self.source_ids((self.prefix or "") + text, src_lang, options["truncation"])
        config = config.replace(forced_bos_token_id=self.languages.target_id(tgt_lang))
        ids = np.array([ids], dtype=np.int64)
        return ids, np.ones_like(ids), config

    def source_ids(self, text: str, src_lang, truncation) -> list[int]:
        """``src_lang``'s code and </s> around the text's ids, truncated as transformers does
        (the two special tokens count in the model's length)."""
        limit = self.tokenizer.model_max_length
        truncate = bool(truncation) and truncation != "do_not_truncate" and limit is not None
        encoding = encode_texts(self.tokenizer, [text], add_special_tokens=False,
                                truncation=truncate,
                                max_length=max(limit - 2, 1) if truncate else None)[0]
        ids = self.languages.source_ids(list(encoding.ids), src_lang)
        if self.encoder_positions is not None and len(ids) > self.encoder_positions:
            raise InputError(
                f"The input is {len(ids)} tokens long, but the model takes at most "
                f"{self.encoder_positions}. Note: pass truncation=True to cut it to the "
                "model's length, or shorten the text.")
        return ids
