"""VisualBERT: optimum-onnx's export config, corrected.

optimum registers VisualBertModel for feature-extraction, but its config leaves out
``token_type_ids`` (the model then takes every token as segment 0, where BERT's tokenizer marks
a second text as segment 1) and declares the visual embeddings' last dim dynamic, though it is
fixed by the model (``visual_embedding_dim``, the detector's region feature size). This one
takes token_type_ids and fixes that dim, so the graph states the size a caller must give.

The graph: input_ids, attention_mask, token_type_ids [batch, sequence], visual_embeds
[batch, visual_sequence, visual_embedding_dim] (float32), visual_attention_mask and
visual_token_type_ids [batch, visual_sequence] -> last_hidden_state [batch, sequence +
visual_sequence, hidden]: the text tokens, then one token per region, as VisualBertModel gives.

>>> from transformers import VisualBertConfig
>>> config = VisualBertOnnxConfig(VisualBertConfig(visual_embedding_dim=16))
>>> config.inputs["visual_embeds"]
{0: 'batch_size', 1: 'visual_seq_length'}
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from optimum.exporters.onnx.model_configs import VisualBertOnnxConfig as _VisualBert

TASKS = ("feature-extraction",)

# Numbers of regions the validation feeds (the visual_sequence axis), paired with the batch.
REGION_COUNTS = (5, 12)


class VisualBertOnnxConfig(_VisualBert):
    """VisualBertModel -> last_hidden_state, with token_type_ids and a fixed feature size."""

    def __init__(self, config, task: str = "feature-extraction", **kwargs):
        super().__init__(config, task=task, **kwargs)

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        text = {0: "batch_size", 1: "sequence_length"}
        regions = {0: "batch_size", 1: "visual_seq_length"}
        return {"input_ids": text, "attention_mask": text, "token_type_ids": text,
                "visual_embeds": regions, "visual_attention_mask": regions,
                "visual_token_type_ids": regions}


def validation_feeds(input_names: Sequence[str], config, *, seed: int = 0
                     ) -> Iterator[tuple[dict, dict[str, np.ndarray]]]:
    """(shape, feed) at batch 1 and 3 x sequence 9 and 23 x 5 and 12 regions; every row after
    the first has fewer real regions (zero features, mask 0 past them), as a batch of images
    with different numbers of detections is padded."""
    from ..validate import BATCH_SIZES, SEQUENCE_LENGTHS, _text_feed

    rng = np.random.default_rng(seed)
    for batch in BATCH_SIZES:
        for length in SEQUENCE_LENGTHS:
            for regions in REGION_COUNTS:
                embeds = rng.standard_normal(
                    (batch, regions, config.visual_embedding_dim)).astype(np.float32)
                mask = np.ones((batch, regions), dtype=np.int64)
                for row in range(1, batch):
                    mask[row, regions - 2 * row:] = 0
                embeds *= mask[..., None]
                feed = {**_text_feed(rng, input_names, batch, length, config),
                        "visual_embeds": embeds, "visual_attention_mask": mask,
                        "visual_token_type_ids": np.ones((batch, regions), dtype=np.int64)}
                shape = {"batch": batch, "sequence": length, "visual_sequence": regions}
                yield shape, {name: feed[name] for name in input_names}
