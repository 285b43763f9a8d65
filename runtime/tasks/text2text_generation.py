"""The text2text-generation task: an encoder-decoder model (BART, T5, Pegasus) rewrites texts,
as transformers' Text2TextGenerationPipeline does (beam search by default)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import InputError
from .base import config_count
from .generation import GenerationPipeline
from .text import encode_texts


class Text2TextGenerationPipeline(GenerationPipeline):
    """``[{"generated_text": ...}]`` per input (one dict per returned sequence; a list of
    inputs with one sequence each gives a flat list, as in transformers).

    >>> rewrite = pipeline("text2text-generation", model="t5-bundle")      # doctest: +SKIP
    >>> rewrite("question: What is 42? context: 42 is the answer.")         # doctest: +SKIP
    [{'generated_text': 'the answer'}]
    """

    task = "text2text-generation"
    return_name: ClassVar[str] = "generated"
    pipeline_generation_defaults: ClassVar = {"max_new_tokens": 256, "num_beams": 4}
    parameters = {"return_tensors": None, "return_text": None,
                  "clean_up_tokenization_spaces": False, "truncation": None,
                  "stop_sequence": None, "streamer": None}

    def __call__(self, *args, **kwargs):
        if len(args) != 1:
            raise InputError(f"Pass one text or one list of texts, got {len(args)} arguments.")
        own, generation = self._split(kwargs)
        options = self.arguments(own)
        generation = {**self._init_generation, **generation}
        if options["stop_sequence"] is not None:  # transformers stops on its first token
            generation["eos_token_id"] = self.stop_sequence_ids(options["stop_sequence"])[0]
        config = self.call_config(generation)
        texts, single = self.prompts(args[0])
        if options["streamer"] is not None and (len(texts) > 1 or config.num_beams > 1
                                                or config.num_return_sequences > 1):
            raise InputError("Streaming follows one text and one sequence, without beam search. "
                             "Note: pass num_beams=1 and one text at a time.")
        tensors = bool(options["return_tensors"]) and options["return_text"] is not True
        results = [self._generate(text, options, config, tensors) for text in texts]
        if single:
            return results[0]
        if all(len(result) == 1 for result in results):
            return [result[0] for result in results]
        return results

    def _generate(self, text: str, options, config, tensors: bool) -> list[dict]:
        """One text at a time, as transformers runs a list (no padding between texts)."""
        ids, mask, config = self.prepare(text, options, config)
        output = self.generate_ids(ids, mask, config, streamer=options["streamer"])
        if tensors:  # transformers gives torch tensors here; numpy arrays of the same values
            return [{f"{self.return_name}_token_ids": seq} for seq in output.sequences]
        return [{f"{self.return_name}_text": self.tokenizer.decode(
                    seq.tolist(), skip_special_tokens=True,
                    clean_up_tokenization_spaces=options["clean_up_tokenization_spaces"])}
                for seq in output.sequences]

    def prepare(self, text: str, options, config):
        """The encoder's ids and mask for one text, and the generation settings for it
        (translation adds its languages')."""
        ids, mask = self.encode(text, options["truncation"])
        return ids, mask, config

    def encode(self, text: str, truncation) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's ids for ``prefix + text`` (T5's task prefix), checked against the
        model's length."""
        encoding = encode_texts(self.tokenizer, [(self.prefix or "") + text],
                                truncation=bool(truncation) and truncation != "do_not_truncate")
        if self.encoder_positions is not None:  # T5's relative positions take any length
            self.tokenizer.check_length([encoding[0]], self.encoder_positions)
        ids = np.array([encoding[0].ids], dtype=np.int64)
        return ids, np.ones_like(ids)

    @property
    def encoder_positions(self) -> int | None:
        """The encoder's length limit: its learned positions (None for T5's relative ones)."""
        return config_count(self.config, "max_position_embeddings")
