"""feature-extraction for a text beside region features (VisualBERT): the hidden states
VisualBertModel gives for a text and ``visual_embeds`` the caller computed (a detector's region
features; the bundle holds no detector). transformers has no pipeline for it: the results are
``VisualBertModel(...).last_hidden_state`` for each text, the text's tokens then one per
region."""

from __future__ import annotations

import numpy as np

from ..errors import BundleError, InputError
from .base import Pipeline
from .text import check_batch_size, encode_texts, tokenizer_options

_VISUAL = ("visual_embeds", "visual_attention_mask", "visual_token_type_ids")


class VisualFeatureExtractionPipeline(Pipeline):
    """Hidden states of texts with region features: each text gives
    ``[1][tokens + regions][hidden]`` as nested lists (an array with ``return_tensors=True``).

    ``visual_embeds`` is ``[regions, visual_embedding_dim]`` (the same regions for every text)
    or ``[texts, regions, visual_embedding_dim]``, float; ``visual_attention_mask`` (1 for a real
    region, 0 for padding) and ``visual_token_type_ids`` have its shape without the last axis
    and default to ones, as in transformers.

    >>> embed = pipeline("feature-extraction", model="visualbert-bundle")   # doctest: +SKIP
    >>> regions = np.zeros((36, 2048), np.float32)     # a detector's features
    >>> np.shape(embed("a cat on a sofa", visual_embeds=regions))            # doctest: +SKIP
    (1, 44, 768)
    """

    task = "feature-extraction"
    parameters = {"truncation": None, "tokenize_kwargs": None, "return_tensors": False,
                  "batch_size": 1, "visual_embeds": None, "visual_attention_mask": None,
                  "visual_token_type_ids": None}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = next((s for s in self.engine.inputs if s.name == "visual_embeds"), None)
        if spec is None:
            raise BundleError(
                "This bundle's graph takes no visual_embeds, so it is not a VisualBERT graph. "
                "Note: export the checkpoint again with `edgeport export`.")
        self.feature_size = spec.dims[-1] if isinstance(spec.dims[-1], int) else None

    def __call__(self, inputs, **kwargs):
        args = self.arguments(kwargs)
        texts, single = self.texts(inputs)
        visual = self._visual(args, len(texts))
        given = dict(args["tokenize_kwargs"] or {})
        if args["truncation"] is not None:
            if "truncation" in given:
                raise InputError("truncation is given twice, as an argument and in "
                                 "tokenize_kwargs. Note: give it once.")
            given["truncation"] = args["truncation"]
        encode, pad_to = tokenizer_options(given, self.max_positions)
        batch_size = check_batch_size(args["batch_size"])
        results = []
        for start in range(0, len(texts), batch_size):
            rows = slice(start, start + batch_size)
            encodings = encode_texts(self.tokenizer, texts[rows], **encode)
            if not encode["truncation"]:
                self.tokenizer.check_length(encodings, self.max_positions)
            feed = self.text_feed(encodings, pad_to=pad_to)
            feed.update({name: value[rows] for name, value in visual.items()})
            hidden = self.engine.run(feed)[self.engine.outputs[0].name]
            width = feed["input_ids"].shape[1]
            for i, encoding in enumerate(encodings):
                n = max(len(encoding.ids), pad_to or 0)
                text = (hidden[i:i + 1, width - n:width] if self.tokenizer.padding_side == "left"
                        else hidden[i:i + 1, :n])
                row = np.concatenate([text, hidden[i:i + 1, width:]], axis=1)
                results.append(row if args["return_tensors"] else row.tolist())
        return results[0] if single else results

    def _visual(self, args, texts: int) -> dict[str, np.ndarray]:
        """The visual inputs as [texts, regions, ...] arrays, checked."""
        embeds = args["visual_embeds"]
        if embeds is None:
            raise InputError(
                "This VisualBERT bundle needs visual_embeds, the region features of the image "
                "(a detector's, [regions, visual_embedding_dim]), and none were given. Note: "
                "pass visual_embeds=array; the bundle does not compute them from an image.")
        embeds = _array(embeds, "visual_embeds", float)
        if embeds.ndim == 2:
            embeds = np.broadcast_to(embeds, (texts, *embeds.shape))
        expected = self.feature_size or "visual_embedding_dim"
        if embeds.ndim != 3 or embeds.shape[0] != texts or embeds.shape[1] < 1 or (
                self.feature_size is not None and embeds.shape[2] != self.feature_size):
            raise InputError(
                f"visual_embeds has shape {embeds.shape}; expected [regions, {expected}] for "
                f"every text, or [{texts}, regions, {expected}] (one row per text), with at "
                "least one region. Note: the feature size is the model's visual_embedding_dim.")
        if not np.isfinite(embeds).all():
            raise InputError("visual_embeds holds NaN or infinite values. Note: pass finite "
                             "region features.")
        result = {"visual_embeds": np.ascontiguousarray(embeds, dtype=np.float32)}
        for name in _VISUAL[1:]:
            value = args[name]
            if value is None:
                value = np.ones(embeds.shape[:2], dtype=np.int64)
            else:
                value = _array(value, name, int)
                if value.ndim == 1:
                    value = np.broadcast_to(value, (texts, *value.shape))
                if value.shape != embeds.shape[:2]:
                    raise InputError(
                        f"{name} has shape {value.shape}, but visual_embeds has "
                        f"{embeds.shape[:2]} regions. Note: give one value per region "
                        "([regions], or [texts, regions]).")
                if name == "visual_attention_mask" and not np.isin(value, (0, 1)).all():
                    raise InputError(f"{name} must hold 0 (padding) and 1 (a region) only. "
                                     "Note: fix the mask.")
            if name in self.input_names:
                result[name] = np.ascontiguousarray(value, dtype=np.int64)
        return result


def _array(value, name: str, kind: type) -> np.ndarray:
    """A numpy array of real numbers (``kind`` int: integers only) from an array or lists."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged lists
        raise InputError(f"{name} cannot be read as an array: {exc}. Note: pass a numpy "
                         "array, or nested lists of one shape.") from None
    ok = (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)
          if kind is int else np.issubdtype(array.dtype, np.number)
          and not np.issubdtype(array.dtype, np.complexfloating))
    if not ok:
        wanted = "integers" if kind is int else "real numbers (float32)"
        raise InputError(f"{name} has dtype {array.dtype}; expected {wanted}. Note: pass a "
                         f"numpy array of {wanted}.")
    return array
