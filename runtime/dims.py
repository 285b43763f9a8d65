"""The closed vocabulary of dynamic dimension names, shared by export, profiles and validation.

Every dynamic axis of every graph in a bundle carries one of these names in the manifest, so a
TensorRT profile or a validation shape can be derived from the name alone.
"""

from __future__ import annotations

DIM_NAMES = (
    "batch",
    "text_batch",  # the texts beside a batch of images (CLIP's candidate labels)
    "sequence",
    "past_sequence",  # positions a KV cache holds (a decoder's self-attention cache)
    "total_sequence",  # past_sequence + the new positions: a cached decoder's attention mask
    "encoder_sequence",
    "decoder_sequence",
    "channels",
    "height",
    "width",
    "audio_samples",  # a raw waveform's length (Wav2Vec2's input_values and attention_mask)
    "audio_frames",  # frames of audio after a model's framing (a CTC model's logits, 20 ms each)
    "num_queries",
    "visual_sequence",  # region features beside a text (VisualBERT's visual_embeds)
)

# optimum-onnx's axis names (and the names its graphs carry after export) -> ours.
_OPTIMUM_AXES = {
    "batch_size": "batch",
    "image_batch_size": "batch",
    "text_batch_size": "text_batch",
    "num_channels": "channels",
    "sequence_length": "sequence",
    "past_sequence_length": "past_sequence",
    "past_decoder_sequence_length": "past_sequence",
    # Past plus new positions differ from the new positions alone (1 at a decoding step), so
    # they get their own name: a TensorRT profile gives each name one range.
    "past_sequence_length + 1": "total_sequence",
    "past_sequence_length + sequence_length": "total_sequence",
    "past_decoder_sequence_length + decoder_sequence_length": "total_sequence",
    "encoder_sequence_length": "encoder_sequence",
    "encoder_sequence_length_out": "encoder_sequence",
    "decoder_sequence_length": "decoder_sequence",
    "height": "height",
    "width": "width",
    "num_queries": "num_queries",
    "visual_seq_length": "visual_sequence",
}


def dim_name_from_optimum(axis: str) -> str | None:
    """Our name for one of optimum's axis names, or None when it has no counterpart.

    >>> dim_name_from_optimum("sequence_length")
    'sequence'
    """
    if axis in DIM_NAMES:
        return axis
    return _OPTIMUM_AXES.get(axis)
