"""CTC decoding: the character vocabulary of Wav2Vec2-style models, read from vocab.json.

Wav2Vec2CTCTokenizer has no fast (tokenizer.json) form, so the runtime reads its files itself:
``vocab.json`` (token -> id) and ``tokenizer_config.json`` (the pad token that is the CTC
blank, the word delimiter, lower-casing). Decoding is transformers': repeated ids collapse, the
blank drops out, the word delimiter becomes a space; offsets count logits frames.

>>> ctc = CtcTokenizer({"<pad>": 0, "|": 1, "A": 2, "B": 3}, {})
>>> ctc.decode([2, 2, 0, 2, 1, 1, 3, 0])
'AA B'
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import groupby
from pathlib import Path

from ..errors import BundleError, BundleNotFoundError
from ..files import read_json_file
from ..text.tokenizer import clean_up_tokenization

_FIX = "Note: the file is damaged or not a Wav2Vec2CTCTokenizer's; export the bundle again."


class CtcTokenizer:
    """transformers' Wav2Vec2CTCTokenizer decoding, from its vocabulary and config."""

    def __init__(self, vocab: Mapping[str, int], config: Mapping):
        if not isinstance(config, Mapping):
            raise BundleError(f"tokenizer_config.json must be a JSON object, got "
                              f"{type(config).__name__}. {_FIX}")
        if not isinstance(vocab, Mapping) or not vocab:
            raise BundleError(f"vocab.json must map tokens to ids. {_FIX}")
        target = config.get("target_lang")
        if target:  # multilingual vocabularies nest one per language
            if not isinstance(target, str) or not isinstance(vocab.get(target), Mapping):
                raise BundleError(
                    f"tokenizer_config.json names target_lang={repr(target)[:80]}, which "
                    f"vocab.json has no vocabulary for. Note: its languages are "
                    f"{sorted(str(k) for k in vocab)[:20]}; fix target_lang."
                )
            vocab = vocab[target]
        self.tokens = {}
        for token, i in vocab.items():
            if not isinstance(i, int) or isinstance(i, bool) or i < 0:
                raise BundleError(f"vocab.json maps {repr(token)[:80]} to {repr(i)[:80]}, not a "
                                  f"token id (an integer of at least 0). {_FIX}")
            self.tokens[i] = token
        self.pad_token = _content(config, "pad_token", "<pad>")
        self.unk_token = _content(config, "unk_token", "<unk>")
        self.word_delimiter_token = _content(config, "word_delimiter_token", "|")
        self.replace_word_delimiter_char = _content(config, "replace_word_delimiter_char", " ",
                                                    optional=False)
        self.do_lower_case = bool(config.get("do_lower_case", False))
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces",
                                                            False))
        self.pad_token_id = vocab.get(self.pad_token)

    @classmethod
    def from_dir(cls, directory: str | Path) -> CtcTokenizer:
        directory = Path(directory)
        try:
            vocab = read_json_file(directory / "vocab.json", "vocab.json", error=BundleError,
                                   missing=BundleNotFoundError, expect=dict)
        except BundleNotFoundError:
            raise BundleNotFoundError(
                f"No vocab.json in {directory}: a CTC model's characters are read from it. Note: "
                "export the checkpoint again with its tokenizer files."
            ) from None
        config_path = directory / "tokenizer_config.json"
        config = (read_json_file(config_path, "tokenizer_config.json", error=BundleError,
                                 expect=dict) if config_path.exists() else {})
        return cls(vocab, config)

    def decode(self, ids, *, offsets: str | None = None):
        """Text of a frame-by-frame id sequence (the argmax of CTC logits); with
        ``offsets="char"`` or ``"word"`` also [{"char"|"word", "start_offset", "end_offset"}]
        in logits frames, as transformers' ``output_char_offsets`` / ``_get_word_offsets``."""
        tokens = [self.tokens.get(int(i), self.unk_token) for i in ids]
        if not tokens:
            return ("", []) if offsets else ""
        groups = [(token, len(list(run))) for token, run in groupby(tokens)]
        chars = [self.replace_word_delimiter_char if token == self.word_delimiter_token
                 else token for token, _ in groups if token != self.pad_token]
        text = "".join(chars).strip()
        if self.do_lower_case:
            text = text.lower()
        if self.clean_up_tokenization_spaces:
            text = clean_up_tokenization(text)
        if not offsets:
            return text
        char_offsets, end = [], 0
        for token, count in groups:
            start, end = end, end + count
            if token != self.pad_token:
                char_offsets.append({"char": token, "start_offset": start, "end_offset": end})
        for item, char in zip(char_offsets, chars):
            item["char"] = char
        if offsets == "char":
            return text, char_offsets
        return text, self._word_offsets(char_offsets)

    def _word_offsets(self, char_offsets: list[dict]) -> list[dict]:
        """Words between delimiters, with the frames of their first and last characters."""
        words, word, start, end, last = [], "", 0, 0, "SPACE"
        for item in char_offsets:
            state = "SPACE" if item["char"] == self.replace_word_delimiter_char else "WORD"
            if state == last:
                end = item["end_offset"]
                word += item["char"]
            elif state == "SPACE":
                words.append({"word": word, "start_offset": start, "end_offset": end})
            else:
                word, start, end = item["char"], item["start_offset"], item["end_offset"]
            last = state
        if last == "WORD":
            words.append({"word": word, "start_offset": start, "end_offset": end})
        return words


def _content(config: Mapping, key: str, default: str, *, optional: bool = True) -> str | None:
    """A special token as tokenizer_config.json stores it: a string or an AddedToken dict
    (null: no such token, with ``optional``)."""
    token = config.get(key, default)
    value = token.get("content") if isinstance(token, Mapping) else token
    if not isinstance(value, str) and not (optional and value is None):
        raise BundleError(f"tokenizer_config.json has {key}={repr(token)[:80]}: it must be a "
                          "string (or an AddedToken object with a string 'content'). Note: fix "
                          "it in tokenizer_config.json, or export the bundle again.")
    return value
