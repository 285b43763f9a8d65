"""The language codes of a multilingual translation tokenizer (mBART's), read from
tokenizer_config.json as transformers' tokenizers save them: which codes it knows, where the
source language's code goes around the text, and the target code's id, which generation forces
as the first token.

transformers' translation pipeline calls the tokenizer's ``_build_translation_inputs`` with
``src_lang`` and ``tgt_lang``: mBART-50 encodes ``[src_lang] X </s>``, mBART (cc25)
``X </s> [src_lang]``, and both set ``forced_bos_token_id`` to the target code's id. A tokenizer
without language codes (T5, BART, Marian) ignores both.

>>> codes = LanguageCodes.from_tokenizer(tokenizer)       # doctest: +SKIP
>>> codes.source_ids([1001, 1002], "en_XX"), codes.target_id("ro_RO")  # doctest: +SKIP
([250004, 1001, 1002, 2], 250020)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import BundleError, InputError, did_you_mean

# tokenizer class -> where its set_src_lang_special_tokens puts the source code: before the text
# (with </s> after it) or after the text's </s>.
SOURCE_CODE_PLACES = {"MBart50Tokenizer": "before", "MBartTokenizer": "after"}
# tokenizer_config.json keys of tokenizers that switch languages per call (their classes have
# _build_translation_inputs): one of them with a class not above cannot be served.
_LANGUAGE_KEYS = ("src_lang", "tgt_lang")


@dataclass(frozen=True)
class LanguageCodes:
    """A tokenizer's language codes (code -> token id), where the source code goes, and the
    end-of-sequence id that follows the text."""

    codes: Mapping[str, int]
    place: str
    eos_token_id: int
    tokenizer_class: str

    @classmethod
    def from_tokenizer(cls, tokenizer) -> LanguageCodes | None:
        """The codes of a bundle's tokenizer (a ``TextTokenizer``); None when it has none, and
        a BundleError when it switches languages in a way edgeport does not know."""
        config = tokenizer.config
        name = config.get("tokenizer_class")
        name = name.removesuffix("Fast") if isinstance(name, str) else None
        if name not in SOURCE_CODE_PLACES:
            if any(key in config for key in _LANGUAGE_KEYS):
                raise BundleError(
                    f"The bundle's tokenizer ({name or 'no tokenizer_class'}) chooses its "
                    "languages per call (src_lang, tgt_lang), in a way edgeport does not know. "
                    f"Note: edgeport translates with the language codes of "
                    f"{', '.join(sorted(SOURCE_CODE_PLACES))}.")
            return None
        listed = config.get("additional_special_tokens")
        if not isinstance(listed, list) or not listed:
            raise BundleError(
                f"tokenizer_config.json of a {name} lists no language codes "
                "(additional_special_tokens). Note: export the checkpoint again with "
                "`edgeport export`, which saves them.")
        codes = {}
        for token in listed:
            code = token.get("content") if isinstance(token, Mapping) else token
            token_id = tokenizer.token_to_id(code) if isinstance(code, str) else None
            if token_id is None:
                raise BundleError(
                    f"tokenizer_config.json lists the language code {repr(code)[:80]}, which "
                    "tokenizer.json does not hold. Note: export the checkpoint again.")
            codes[code] = token_id
        eos = tokenizer.special_token_ids.get("eos_token")
        if eos is None:
            raise BundleError(f"The {name} of the bundle has no eos_token in tokenizer.json. "
                              "Note: export the checkpoint again.")
        return cls(codes, SOURCE_CODE_PLACES[name], eos, name)

    def _id(self, code, which: str) -> int:
        if not isinstance(code, str) or code not in self.codes:
            note = did_you_mean(str(code), self.codes).replace("known values are",
                                                               "its language codes are")
            # "ro" for "ro_RO": a language without its region, which difflib finds too far
            regional = [c for c in self.codes if c.lower().startswith(f"{str(code).lower()}_")]
            if regional and not note.startswith("Did you mean"):
                note = f"Did you mean {regional[0]!r}? {note}"
            raise InputError(
                f"Unknown {which} language {code!r} for this {self.tokenizer_class}. {note}")
        return self.codes[code]

    def source_ids(self, text_ids: list[int], src_lang) -> list[int]:
        """The encoder's ids: the text's own ids (no special tokens) with ``</s>`` and the
        source language's code."""
        code = self._id(src_lang, "source")
        if self.place == "before":
            return [code, *text_ids, self.eos_token_id]
        return [*text_ids, self.eos_token_id, code]

    def target_id(self, tgt_lang) -> int:
        """The id generation forces as the first token (``forced_bos_token_id``)."""
        return self._id(tgt_lang, "target")
