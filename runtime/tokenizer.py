"""A fast tokenizer read from a bundle's tokenizer.json and tokenizer_config.json.

Behaves like transformers' PreTrainedTokenizerFast for what pipelines need: truncation
strategies with stride and overflow, padding to the longest row, special tokens, decoding with
``clean_up_tokenization_spaces``. Safe to share between threads: each thread encodes with its own
copy of the ``tokenizers.Tokenizer``, because one instance used by two threads at once raises
"Already borrowed".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import BundleNotFoundError, InputError

# Above this, transformers treats model_max_length as "no limit" (it stores int(1e30)).
_NO_LIMIT = int(1e12)
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                 "mask_token")


def _token_content(value) -> str | None:
    if isinstance(value, dict):  # a serialized AddedToken
        return value.get("content")
    return value


class TextTokenizer:
    """Tokenizer of a bundle (or any directory holding tokenizer.json).

    >>> tok = TextTokenizer.from_dir("bundle")                  # doctest: +SKIP
    >>> tok.pad(tok.encode_batch(["hello world"]))["input_ids"]  # doctest: +SKIP
    array([[ 101, 7592, 2088,  102]])
    """

    def __init__(self, tokenizer_json: str, config: dict | None = None):
        from tokenizers import Tokenizer

        self._json = tokenizer_json
        self._local = threading.local()
        self.config = dict(config or {})
        probe = Tokenizer.from_str(tokenizer_json)
        self._vocab_size = probe.get_vocab_size(with_added_tokens=True)
        max_len = self.config.get("model_max_length")
        self.model_max_length = int(max_len) if max_len and max_len < _NO_LIMIT else None
        self.padding_side = self.config.get("padding_side", "right")
        self.truncation_side = self.config.get("truncation_side", "right")
        self.clean_up_tokenization_spaces = bool(
            self.config.get("clean_up_tokenization_spaces", False)
        )
        self.special_tokens = {k: _token_content(self.config.get(k)) for k in _SPECIAL_KEYS}
        self.special_token_ids = {
            k: (probe.token_to_id(v) if v is not None else None)
            for k, v in self.special_tokens.items()
        }
        self._all_special_ids = {
            i for i in self.special_token_ids.values() if i is not None
        } | {
            int(i) for i, tok in self.config.get("added_tokens_decoder", {}).items()
            if isinstance(tok, dict) and tok.get("special")
        }

    @classmethod
    def from_dir(cls, directory: str | Path) -> TextTokenizer:
        directory = Path(directory)
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise BundleNotFoundError(
                f"No tokenizer.json in {directory}. Note: a text bundle carries its fast "
                "tokenizer; export the checkpoint again with `edgeport export`, which converts "
                "slow tokenizer files to tokenizer.json."
            )
        config = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            if (directory / name).is_file():
                config.update(json.loads((directory / name).read_text(encoding="utf-8")))
        return cls(path.read_text(encoding="utf-8"), config)

    # --- the per-thread tokenizers.Tokenizer ------------------------------------------------
    @property
    def backend(self):
        tok = getattr(self._local, "tokenizer", None)
        if tok is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(self._json)
            tok.no_truncation()  # tokenizer.json may carry the exporter's padding/truncation;
            tok.no_padding()     # transformers overrides them per call, and so do we.
            self._local.tokenizer = tok
        return tok

    # --- special tokens ---------------------------------------------------------------------
    @property
    def pad_token_id(self) -> int | None:
        return self.special_token_ids["pad_token"]

    @property
    def mask_token(self) -> str | None:
        return self.special_tokens["mask_token"]

    @property
    def mask_token_id(self) -> int | None:
        return self.special_token_ids["mask_token"]

    @property
    def all_special_ids(self) -> set[int]:
        return set(self._all_special_ids)

    def __len__(self) -> int:
        return self._vocab_size

    # --- encoding ---------------------------------------------------------------------------
    def encode_batch(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        truncation: bool | str = False,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
    ):
        """``tokenizers.Encoding`` objects, one per text (overflow in ``.overflowing``).

        ``truncation`` is False, True (= "longest_first"), "longest_first", "only_first" or
        "only_second", as in transformers; with truncation and no ``max_length`` the model's
        maximum length is used. With ``is_split_into_words`` each text is a list of words, and
        offsets count from the start of each word, as in transformers.
        """
        for text in list(texts) + list(pairs or []):
            if is_split_into_words:
                if not (isinstance(text, (list, tuple)) and all(isinstance(w, str) for w in text)):
                    raise InputError(
                        f"Expected a list of words (str), got {type(text).__name__}: "
                        f"{text!r:.80}. Note: with is_split_into_words pass lists of strings."
                    )
            elif not isinstance(text, str):
                raise InputError(
                    f"Expected text (str), got {type(text).__name__}: {text!r:.80}. "
                    "Note: pass a string or a list of strings."
                )
        if is_split_into_words:  # tokenizers reads a tuple as a (text, pair) pair
            texts = [list(words) for words in texts]
            pairs = None if pairs is None else [list(words) for words in pairs]
        tok = self.backend
        if truncation:
            strategy = "longest_first" if truncation is True else truncation
            if strategy not in ("longest_first", "only_first", "only_second"):
                raise InputError(
                    f"Unknown truncation strategy {truncation!r}. Note: use True, "
                    "'longest_first', 'only_first' or 'only_second'."
                )
            length = max_length or self.model_max_length
            if length is None:
                raise InputError(
                    "truncation=True needs a max_length: this tokenizer has no model_max_length."
                )
            tok.enable_truncation(
                int(length), stride=int(stride), strategy=strategy,
                direction=self.truncation_side,
            )
        try:
            if pairs is None:
                return tok.encode_batch(list(texts), add_special_tokens=add_special_tokens,
                                        is_pretokenized=is_split_into_words)
            return tok.encode_batch(list(zip(texts, pairs)), add_special_tokens=add_special_tokens,
                                    is_pretokenized=is_split_into_words)
        finally:
            if truncation:
                tok.no_truncation()

    def pad(self, encodings, *, pad_to: int | None = None) -> dict[str, np.ndarray]:
        """input_ids, attention_mask and token_type_ids as int64 arrays padded to the longest row
        (or to ``pad_to``), on the tokenizer's padding side."""
        length = max([len(e.ids) for e in encodings] + [pad_to or 0])
        n = len(encodings)
        pad_id = self.pad_token_id if self.pad_token_id is not None else 0
        ids = np.full((n, length), pad_id, dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.int64)
        types = np.zeros((n, length), dtype=np.int64)
        for row, enc in enumerate(encodings):
            k = len(enc.ids)
            cols = slice(length - k, length) if self.padding_side == "left" else slice(0, k)
            ids[row, cols] = enc.ids
            mask[row, cols] = enc.attention_mask
            types[row, cols] = enc.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def check_length(self, encodings, max_positions: int | None, *,
                     fix: str = "pass truncation=True to cut it to the model's length") -> None:
        """A clear error when a row is longer than the model can take (transformers would fail
        deep inside the model with an index error); ``fix`` says how, for this task."""
        limit = max_positions or self.model_max_length
        if limit is None:
            return
        longest = max((len(e.ids) for e in encodings), default=0)
        if longest > limit:
            raise InputError(
                f"The input is {longest} tokens long, but the model takes at most {limit}. "
                f"Note: {fix}, or shorten the text."
            )

    # --- decoding ---------------------------------------------------------------------------
    def decode(self, ids, *, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        if isinstance(ids, (int, np.integer)):
            ids = [int(ids)]
        text = self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean else text

    def convert_ids_to_tokens(self, ids) -> list[str]:
        tok = self.backend
        return [tok.id_to_token(int(i)) for i in ids]

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)


def clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: drop spaces before punctuation and contractions.

    >>> clean_up_tokenization("it 's here .")
    "it's here."
    """
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                          (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"),
                          (" 're", "'re")):
        text = text.replace(before, after)
    return text
