"""Text generation in numpy over ONNX Runtime: one loop for every generative task.

    config (config.py)  transformers' generation settings: model defaults <- call arguments
    logits.py           the logits processors and warpers, in transformers' order
    stopping.py         max length, eos, stop strings, max time
    search.py           greedy, sampling, beam search over a GenerationModel (model.py)
    onnx_model.py       the GenerationModel of a bundle's graphs (KV cache fed by name)
    streaming.py        text pieces as tokens come

``run`` ties them together for a batch of token ids; the pipelines in ``runtime.tasks`` add
tokenization, prompts and the result structure of transformers' pipelines.

May import the bundle and the layers below it (errors, files, backends.engine and backends'
tables); never ``runtime.tasks``, ``runtime.pipeline`` or ``runtime.cli``. ``config`` imports
only ``runtime.errors``, so that ``runtime.audio.whisper`` can read Whisper's settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from .config import (
    GenerationConfig,
    generation_config_for_inputs,
    model_generation_config,
    resolve_generation_config,
)
from .logits import logits_processors
from .model import GenerationModel
from .onnx_model import OnnxGenerationModel
from .search import GenerateOutput, LogitsProcessor, generate
from .stopping import MaxTimeCriteria, StoppingCriteriaList, StopStringCriteria
from .streaming import TextStreamer, iterate

# The longest sequence generated for a model whose config.json declares no position limit (T5's
# relative positions, BLOOM's ALiBi): transformers has none, and max_new_tokens=10**9 would
# then run until memory runs out. Far above what such models are trained on (T5: 512).
MAX_LENGTH_WITHOUT_POSITIONS = 2**15

__all__ = [
    "GenerateOutput", "GenerationConfig", "GenerationModel", "OnnxGenerationModel",
    "TextStreamer", "generation_config_for_inputs", "iterate", "model_generation_config",
    "resolve_generation_config", "run",
]


def run(model: GenerationModel, input_ids: np.ndarray | Mapping[str, np.ndarray],
        attention_mask: np.ndarray | None, config: GenerationConfig, *, tokenizer=None,
        max_positions: int | None = None, max_positions_key: str | None = None,
        on_tokens: Callable[[np.ndarray], None] | None = None,
        decoder_input_ids: np.ndarray | None = None,
        logits_processor: Sequence[LogitsProcessor] = ()) -> GenerateOutput:
    """Generate from a batch of token ids with a resolved ``config`` (see
    ``resolve_generation_config``), as transformers' ``generate()`` does: lengths counted for
    this prompt, the processors and stopping criteria the config asks for, then the search.

    An encoder-decoder model may instead be given its encoder's feed (Whisper's
    ``{"input_features": ...}``, attention_mask None), and ``decoder_input_ids``, the
    decoder's prompt from ``decoder_start_token_id`` on (Whisper's start, language and task
    tokens): lengths then count from its end. ``logits_processor`` are the caller's own, run
    after the config's processors and before its sampling warpers, where transformers runs a
    ``logits_processor`` passed to ``generate()``.

    ``max_positions`` is the model's position limit (GPT-2's n_positions), and
    ``max_positions_key`` the config.json key it is read from, for the error: it caps a default
    max_length as transformers does, and a sequence that would outgrow it is an error here (in
    transformers, an index error deep in the model). Without one, the sequence may be at most
    MAX_LENGTH_WITHOUT_POSITIONS long. ``tokenizer`` reads stop strings.
    """
    if not model.is_encoder_decoder:
        length = input_ids.shape[1]
    else:
        length = 1 if decoder_input_ids is None else np.shape(decoder_input_ids)[1]
    ready = generation_config_for_inputs(config, input_ids_length=length,
                                         is_encoder_decoder=model.is_encoder_decoder,
                                         max_position_embeddings=max_positions)
    what = "the decoder" if model.is_encoder_decoder else "the prompt and the new tokens"
    if max_positions is not None and ready.max_length > max_positions:
        source = f" (config.json's {max_positions_key})" if max_positions_key else ""
        raise InputError(
            f"Generation would reach {ready.max_length} positions ({what}), but the model has "
            f"{max_positions}{source}. Note: lower max_new_tokens (or max_length), or shorten "
            "the prompt."
        )
    if max_positions is None and ready.max_length > MAX_LENGTH_WITHOUT_POSITIONS:
        raise InputError(
            f"Generation would reach {ready.max_length} positions ({what}), over edgeport's "
            f"limit of {MAX_LENGTH_WITHOUT_POSITIONS} for a model whose config.json declares no "
            "position limit (no n_positions, max_position_embeddings or max_target_positions). "
            "Note: lower max_new_tokens (or max_length)."
        )
    if (not getattr(model, "takes_padding", True) and attention_mask is not None
            and not np.asarray(attention_mask).all()):
        return _row_by_row(model, input_ids, attention_mask, ready, tokenizer=tokenizer,
                           on_tokens=on_tokens, logits_processor=logits_processor)
    return _generate(model, input_ids, attention_mask, ready, length, tokenizer=tokenizer,
                     on_tokens=on_tokens, decoder_input_ids=decoder_input_ids,
                     logits_processor=logits_processor)


def _generate(model, input_ids, attention_mask, ready: GenerationConfig, length: int, *,
              tokenizer, on_tokens, decoder_input_ids=None, logits_processor=()):
    """The search over one batch with a config whose lengths are counted for it."""
    extra = StoppingCriteriaList()
    if ready.stop_strings is not None:
        if tokenizer is None:
            raise InputError("stop_strings need the tokenizer to read the text. Note: pass "
                             "tokenizer=... (the bundle's).")
        extra.append(StopStringCriteria(tokenizer, ready.stop_strings))
    if ready.max_time is not None:
        extra.append(MaxTimeCriteria(ready.max_time))
    processors = logits_processors(ready, length, custom=logits_processor)
    return generate(
        model, input_ids, attention_mask, max_length=ready.max_length,
        eos_token_id=ready.eos_token_id, pad_token_id=ready.pad_token_id,
        decoder_start_token_id=ready.decoder_start_token_id,
        decoder_input_ids=decoder_input_ids, do_sample=ready.do_sample,
        num_beams=ready.num_beams, num_return_sequences=ready.num_return_sequences,
        length_penalty=ready.length_penalty, early_stopping=ready.early_stopping,
        logits_processor=processors or None, stop=extra or None, rng=ready.seed,
        on_tokens=on_tokens)


def _row_by_row(model, input_ids: np.ndarray, attention_mask: np.ndarray,
                ready: GenerationConfig, *, tokenizer, on_tokens, logits_processor
                ) -> GenerateOutput:
    """A left-padded batch for a model that takes no padding: each prompt generated alone,
    its lengths (max_length, min_length) shifted by its padding so that it gets what the batch
    would give it, and the rows put back in the batch's layout (the left padding kept, shorter
    generations padded at the end with the pad id, as finished rows of a batch are)."""
    input_ids, mask = np.asarray(input_ids), np.asarray(attention_mask)
    pad_id = ready.pad_token_id if ready.pad_token_id is not None else 0
    rows, scores = [], []
    for ids, row_mask in zip(input_ids, mask):
        padding = int((row_mask == 0).sum())
        prompt = ids[row_mask > 0][None, :]
        shifted = dataclasses.replace(
            ready, max_length=ready.max_length - padding,
            min_length=max(0, (ready.min_length or 0) - padding))
        output = _generate(model, prompt, np.ones_like(prompt), shifted, prompt.shape[1],
                           tokenizer=tokenizer, on_tokens=on_tokens,
                           logits_processor=logits_processor)
        for sequence in output.sequences:
            rows.append(np.concatenate([ids[:padding], sequence]))
        if output.sequences_scores is not None:
            scores.append(output.sequences_scores)
    width = max(len(row) for row in rows)
    sequences = np.full((len(rows), width), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        sequences[i, :len(row)] = row
    return GenerateOutput(sequences, np.concatenate(scores) if scores else None)

