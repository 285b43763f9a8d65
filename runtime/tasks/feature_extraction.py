"""The feature-extraction task: token embeddings as transformers gives them, and sentence
embeddings for sentence-transformers bundles (pooling and normalization from the bundle's
modules.json)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..text.pooling import SentencePooling
from .base import Pipeline
from .text import check_batch_size, encode_texts, tokenizer_options


class FeatureExtractionPipeline(Pipeline):
    """Embeddings of texts.

    On a plain model each text gives its token embeddings, ``[1][tokens][hidden]`` as nested
    lists exactly as transformers does. On a sentence-transformers bundle (or with
    ``pooling="mean"`` and friends) each text gives one sentence embedding, pooled and
    normalized as sentence-transformers does, truncated at its ``max_seq_length``.

    >>> embed = pipeline("feature-extraction", model="minilm-bundle")     # doctest: +SKIP
    >>> len(embed("edgeport"))                                             # doctest: +SKIP
    384
    """

    task = "feature-extraction"
    parameters = {
        "truncation": None,
        "tokenize_kwargs": None,
        "return_tensors": False,
        "pooling": "auto",
        "normalize": None,
        "batch_size": 1,
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sentence_pooling = (
            SentencePooling.from_dir(self.bundle.path) if self.bundle is not None else None
        )

    def _pooling(self, args) -> SentencePooling | None:
        pooling, normalize = args["pooling"], args["normalize"]
        if pooling == "auto":
            base = self.sentence_pooling
            if base is None:
                if normalize:
                    raise InputError(
                        "normalize=True needs pooling: this bundle gives token embeddings. "
                        "Note: pass pooling='mean' (or 'cls', 'max', ...) as well."
                    )
                return None
            if normalize is None or normalize == base.normalize:
                return base
            return SentencePooling(base.modes, bool(normalize), base.max_seq_length)
        if pooling in (None, "none"):
            if normalize:
                raise InputError("normalize=True needs a pooling mode. Note: pass pooling='mean'.")
            return None
        modes = (pooling,) if isinstance(pooling, str) else tuple(pooling)
        max_len = self.sentence_pooling.max_seq_length if self.sentence_pooling else None
        return SentencePooling(modes, bool(normalize), max_len)

    def _tokenizer_options(self, args, pooling) -> tuple[dict, int | None]:
        given = dict(args["tokenize_kwargs"] or {})
        if args["truncation"] is not None:
            if "truncation" in given:
                raise InputError(
                    "truncation is given twice, as an argument and in tokenize_kwargs. Note: "
                    "give it once."
                )
            given["truncation"] = args["truncation"]
        if pooling is not None and pooling.max_seq_length and given.get("truncation") is None:
            # sentence-transformers always truncates at the model's max_seq_length.
            given.update(truncation=True,
                         max_length=given.get("max_length") or pooling.max_seq_length)
        return tokenizer_options(given, self.max_positions)

    def __call__(self, inputs, **kwargs):
        args = self.arguments(kwargs)
        texts, single = self.texts(inputs)
        pooling = self._pooling(args)
        options = self._tokenizer_options(args, pooling)
        batch_size = check_batch_size(args["batch_size"])
        results = []
        for start in range(0, len(texts), batch_size):
            for row in self._embed(texts[start:start + batch_size], options, pooling):
                results.append(row if args["return_tensors"] else row.tolist())
        return results[0] if single else results

    def _embed(self, texts: Sequence[str], options, pooling) -> list[np.ndarray]:
        encode, pad_to = options
        encodings = encode_texts(self.tokenizer, texts, **encode)
        if not encode["truncation"]:
            self.tokenizer.check_length(encodings, self.max_positions)
        feed = self.text_feed(encodings, pad_to=pad_to)
        outputs = self.engine.run(feed)
        hidden = outputs[self.engine.outputs[0].name]  # transformers takes the first output
        if pooling is not None:
            mask = self.tokenizer.pad(encodings, pad_to=pad_to)["attention_mask"]
            return list(pooling(hidden, mask))
        # each text's own tokens (and padding to max_length when asked), not the batch's
        lengths = [max(len(e.ids), pad_to or 0) for e in encodings]
        if self.tokenizer.padding_side == "left":
            return [hidden[i:i + 1, hidden.shape[1] - n:] for i, n in enumerate(lengths)]
        return [hidden[i:i + 1, :n] for i, n in enumerate(lengths)]

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Sentence embeddings of many texts as one ``[n, features]`` array, batched.

        >>> embed.embed(["a cat", "a dog"]).shape                            # doctest: +SKIP
        (2, 384)
        """
        args = self.arguments({})
        pooling = self._pooling(args)
        if pooling is None:
            raise InputError(
                "embed() gives sentence embeddings, and this bundle has no sentence-transformers "
                "pooling. Note: create the pipeline with pooling='mean' (or 'cls', 'max')."
            )
        texts, _ = self.texts(texts)
        options = self._tokenizer_options(args, pooling)
        rows = []
        for start in range(0, len(texts), check_batch_size(batch_size)):
            rows += self._embed(texts[start:start + batch_size], options, pooling)
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)
