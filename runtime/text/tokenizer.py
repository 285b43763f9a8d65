"""A fast tokenizer read from a bundle's tokenizer.json and tokenizer_config.json.

Behaves like transformers' PreTrainedTokenizerFast for what pipelines need: truncation
strategies with stride and overflow, padding to the longest row, special tokens, decoding with
``clean_up_tokenization_spaces``.

Safe to share between threads. tokenizer.json is parsed once (~20 ms for a BERT vocabulary;
``copy.copy``, ``copy.deepcopy`` and a pickle round trip of a ``tokenizers.Tokenizer`` cost as
much, since each serializes and parses again). One ``tokenizers.Tokenizer`` raises "Already
borrowed" when a thread changes its settings (``enable_truncation``) while another encodes with
it; reading it from several threads at once is safe. So the shared instance is never changed:
encoding without truncation, decoding and lookups all use it, and an encoding with truncation
checks out an idle copy from a pool, parsing a new one only when every copy is in use (as many
as calls that truncate at the same moment, whatever the number of threads).

The files come with a bundle, from someone else: they are read within bounds, and what they
hold is checked (a tokenizer.json that tokenizers cannot read, a model_max_length that is not a
number) with a BundleError that names the file.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from ..errors import BundleError, BundleNotFoundError, InputError
from ..files import read_json_file, read_text_file

# Above this, transformers treats model_max_length as "no limit" (it stores int(1e30)).
_NO_LIMIT = int(1e12)
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                 "mask_token")
_SIDES = ("right", "left")
_CONFIG_FILES = ("special_tokens_map.json", "tokenizer_config.json")
# transformers' byte-level BPE tokenizers that refuse words (is_split_into_words) unless made with
# add_prefix_space=True: their words would be tokenized without the space that starts a word.
_WORDS_NEED_PREFIX_SPACE = frozenset({
    "BartTokenizer", "BlenderbotTokenizer", "BloomTokenizer", "CodeGenTokenizer",
    "CohereTokenizer", "DebertaTokenizer", "GPT2Tokenizer", "LEDTokenizer",
    "LongformerTokenizer", "MvpTokenizer", "RobertaTokenizer", "WhisperTokenizer"})
_FIX = "Note: fix it in tokenizer_config.json (or special_tokens_map.json), or export again."


def _token_content(value) -> str | None:
    if isinstance(value, dict):  # a serialized AddedToken
        return value.get("content")
    return value


def parse_tokenizer(tokenizer_json: str, where: str = "tokenizer.json"):
    """A ``tokenizers.Tokenizer`` from the text of a tokenizer.json, or a BundleError naming
    ``where``: tokenizers raises a bare Exception (and, on a malformed model, may panic with
    pyo3's PanicException, a BaseException) with serde's words."""
    from tokenizers import Tokenizer

    if not isinstance(tokenizer_json, str):
        raise BundleError(f"{where} must be given as text (str), got "
                          f"{type(tokenizer_json).__name__}. Note: read the file as UTF-8.")
    try:
        tokenizer = Tokenizer.from_str(tokenizer_json)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as error:  # pyo3's PanicException is a BaseException, not an Exception
        raise BundleError(
            f"{where} is not a tokenizer the tokenizers library can read: {str(error)[:200]}. "
            "Note: the file is damaged, or not a fast tokenizer's tokenizer.json; export the "
            "checkpoint again with `edgeport export`."
        ) from None
    tokenizer.no_truncation()  # tokenizer.json may carry the exporter's padding/truncation;
    tokenizer.no_padding()     # transformers overrides them per call, and so do we.
    return tokenizer


def _check_unicode(text: str, number: int) -> None:
    """An InputError for a str that holds a lone surrogate (bytes that were not UTF-8, decoded
    with surrogateescape, as Python decodes argv and file names): no tokenizer can read it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"Text {number} is not valid Unicode: a lone surrogate U+{ord(text[exc.start]):04X} "
            f"at character {exc.start + 1}, where bytes that were not UTF-8 were decoded. Note: "
            "decode the text from UTF-8 (or its real encoding) before passing it."
        ) from None


class TextTokenizer:
    """Tokenizer of a bundle (or any directory holding tokenizer.json).

    >>> tok = TextTokenizer.from_dir("bundle")                  # doctest: +SKIP
    >>> tok.pad(tok.encode_batch(["hello world"]))["input_ids"]  # doctest: +SKIP
    array([[ 101, 7592, 2088,  102]])
    """

    def __init__(self, tokenizer_json: str, config: Mapping | None = None):
        self._json = tokenizer_json
        self._shared = parse_tokenizer(tokenizer_json)  # read by every thread, never changed
        self._idle: list = []  # parsed copies for truncating calls, not in use now
        self._idle_lock = threading.Lock()
        if config is not None and not isinstance(config, Mapping):
            raise BundleError(f"The tokenizer config must be a JSON object, got "
                              f"{type(config).__name__}. {_FIX}")
        self.config = dict(config or {})
        self._vocab_size = self._shared.get_vocab_size(with_added_tokens=True)
        self.model_max_length = _model_max_length(self.config.get("model_max_length"))
        self.padding_side = _side(self.config, "padding_side")
        self.truncation_side = _side(self.config, "truncation_side")
        self.clean_up_tokenization_spaces = bool(
            self.config.get("clean_up_tokenization_spaces", False)
        )
        kind = self.config.get("tokenizer_class")
        self._words_need_prefix_space = (
            isinstance(kind, str) and kind.removesuffix("Fast") in _WORDS_NEED_PREFIX_SPACE
            and not self.config.get("add_prefix_space"))
        self.special_tokens = {k: _special_token(self.config, k) for k in _SPECIAL_KEYS}
        self.special_token_ids = {
            k: (self._shared.token_to_id(v) if v is not None else None)
            for k, v in self.special_tokens.items()
        }
        self._all_special_ids = {
            i for i in self.special_token_ids.values() if i is not None
        } | _added_special_ids(self.config.get("added_tokens_decoder", {}))

    @classmethod
    def from_dir(cls, directory: str | Path) -> TextTokenizer:
        directory = Path(directory)
        path = directory / "tokenizer.json"
        try:
            text = read_text_file(path, "tokenizer.json", error=BundleError,
                                  missing=BundleNotFoundError)
        except BundleNotFoundError:
            raise BundleNotFoundError(
                f"No tokenizer.json in {directory}. Note: a text bundle carries its fast "
                "tokenizer; export the checkpoint again with `edgeport export`, which converts "
                "slow tokenizer files to tokenizer.json."
            ) from None
        config = {}
        for name in _CONFIG_FILES:
            if (directory / name).exists():
                config.update(read_json_file(directory / name, name, error=BundleError,
                                             expect=dict))
        return cls(text, config)

    # --- the tokenizers.Tokenizer -----------------------------------------------------------
    @property
    def backend(self):
        """The ``tokenizers.Tokenizer`` every thread reads (decode, ids, its model and
        decoder). Do not change its settings: threads use it at once."""
        return self._shared

    @contextlib.contextmanager
    def _truncating(self, length: int, stride: int, strategy: str) -> Iterator:
        """A copy of the tokenizer, private to the caller while the block runs, truncating
        as asked; back to the pool afterwards."""
        with self._idle_lock:
            tok = self._idle.pop() if self._idle else None
        if tok is None:  # every copy is in use (or none was made yet): parse one more
            tok = parse_tokenizer(self._json)
        try:
            try:
                tok.enable_truncation(length, stride=stride, strategy=strategy,
                                      direction=self.truncation_side)
            except (ValueError, OverflowError, TypeError) as error:
                raise InputError(f"Cannot truncate to max_length={length} with stride={stride}: "
                                 f"{error}. Note: the stride must be smaller than max_length "
                                 "less the special tokens.") from None
            yield tok
        finally:
            tok.no_truncation()
            with self._idle_lock:
                self._idle.append(tok)

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
        for number, text in enumerate(list(texts) + list(pairs or [])):
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
            for piece in text if is_split_into_words else [text]:
                _check_unicode(piece, number)
        if is_split_into_words and self._words_need_prefix_space:
            raise InputError(
                f"This {self.config['tokenizer_class']} takes words (is_split_into_words) only "
                "when made with add_prefix_space=True, as in transformers. Note: pass the text "
                "as one string, or save the tokenizer with add_prefix_space=True and export the "
                "checkpoint again.")
        if is_split_into_words:  # tokenizers reads a tuple as a (text, pair) pair
            texts = [list(words) for words in texts]
            pairs = None if pairs is None else [list(words) for words in pairs]
        if not truncation:
            return self._encode(self._shared, texts, pairs, add_special_tokens,
                                is_split_into_words)
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
        for name, value, low in (("max_length", length, 1), ("stride", stride, 0)):
            if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
                raise InputError(f"{name} must be an integer of at least {low}, got {value!r}. "
                                 "Note: it counts tokens.")
        with self._truncating(int(length), int(stride), strategy) as tok:
            return self._encode(tok, texts, pairs, add_special_tokens, is_split_into_words)

    @staticmethod
    def _encode(tok, texts, pairs, add_special_tokens, is_split_into_words):
        if pairs is None:
            return tok.encode_batch(list(texts), add_special_tokens=add_special_tokens,
                                    is_pretokenized=is_split_into_words)
        return tok.encode_batch(list(zip(texts, pairs)), add_special_tokens=add_special_tokens,
                                is_pretokenized=is_split_into_words)

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
        ids = [int(i) for i in ids]
        # The tokenizers library takes unsigned 32-bit ids and raises an OverflowError on others
        # (a negative pad_token_id from a generation_config.json pads generated rows with it).
        outside = [i for i in ids if not 0 <= i < 2**32]
        if outside:
            raise InputError(
                f"Cannot decode the token ids {sorted(set(outside))[:10]}: token ids are "
                "integers from 0. Note: a negative id in generated tokens comes from the "
                "pad_token_id (or eos_token_id) of the bundle's generation_config.json or of "
                "the call; fix it there.")
        text = self._shared.decode(ids, skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean else text

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self._shared.id_to_token(int(i)) for i in ids]

    def token_to_id(self, token: str) -> int | None:
        return self._shared.token_to_id(token)


# --- reading tokenizer_config.json ---------------------------------------------------------
def _model_max_length(value) -> int | None:
    """transformers' model_max_length: a positive number; huge ones (its int(1e30)) mean no
    limit. transformers refuses a string too; a bool or NaN is no length either."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not (
            math.isfinite(value) or value == math.inf) or value < 1:
        raise BundleError(f"tokenizer_config.json has model_max_length={repr(value)[:80]}: it "
                          f"must be a positive number of tokens. {_FIX}")
    return int(value) if value < _NO_LIMIT else None


def _side(config: Mapping, key: str) -> str:
    value = config.get(key)
    if value is None:
        return "right"
    if value not in _SIDES:
        raise BundleError(f"tokenizer_config.json has {key}={repr(value)[:80]}: it must be "
                          f"'right' or 'left'. {_FIX}")
    return value


def _special_token(config: Mapping, key: str) -> str | None:
    value = _token_content(config.get(key))
    if value is not None and not isinstance(value, str):
        raise BundleError(f"tokenizer_config.json has {key}={repr(config.get(key))[:80]}: a "
                          f"special token is a string or an AddedToken object with a string "
                          f"'content'. {_FIX}")
    return value


def _added_special_ids(decoder) -> set[int]:
    """The ids of added_tokens_decoder ({"id": {"content": ..., "special": ...}}) marked special."""
    if decoder is None:
        return set()
    if not isinstance(decoder, Mapping):
        raise BundleError(f"tokenizer_config.json has an added_tokens_decoder that is not a JSON "
                          f"object: {repr(decoder)[:80]}. {_FIX}")
    ids = set()
    for key, token in decoder.items():
        if not isinstance(token, Mapping) or not token.get("special"):
            continue
        try:
            ids.add(int(key))
        except (TypeError, ValueError):
            raise BundleError(f"tokenizer_config.json's added_tokens_decoder has the key "
                              f"{repr(key)[:80]}, not a token id. {_FIX}") from None
    return ids


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
