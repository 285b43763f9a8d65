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

import json
from itertools import groupby
from pathlib import Path

from .errors import BundleNotFoundError, InputError
from .tokenizer import clean_up_tokenization


class CtcTokenizer:
    """transformers' Wav2Vec2CTCTokenizer decoding, from its vocabulary and config."""

    def __init__(self, vocab: dict[str, int], config: dict):
        if not isinstance(vocab, dict) or not vocab:
            raise InputError("vocab.json must map tokens to ids. Note: export the bundle again.")
        if config.get("target_lang"):  # multilingual vocabularies nest one per language
            vocab = vocab[config["target_lang"]]
        self.tokens = {int(i): token for token, i in vocab.items()}
        self.pad_token = _content(config.get("pad_token", "<pad>"))
        self.unk_token = _content(config.get("unk_token", "<unk>"))
        self.word_delimiter_token = _content(config.get("word_delimiter_token", "|"))
        self.replace_word_delimiter_char = config.get("replace_word_delimiter_char", " ")
        self.do_lower_case = bool(config.get("do_lower_case", False))
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces",
                                                            False))
        self.pad_token_id = vocab.get(self.pad_token)

    @classmethod
    def from_dir(cls, directory: str | Path) -> CtcTokenizer:
        directory = Path(directory)
        path = directory / "vocab.json"
        if not path.is_file():
            raise BundleNotFoundError(
                f"No vocab.json in {directory}: a CTC model's characters are read from it. Note: "
                "export the checkpoint again with its tokenizer files."
            )
        vocab = json.loads(path.read_text("utf-8"))
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text("utf-8")) if config_path.is_file() else {}
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


def _content(token) -> str:
    """A special token as tokenizer_config.json stores it: a string or an AddedToken dict."""
    return token.get("content") if isinstance(token, dict) else token
