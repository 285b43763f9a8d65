"""The text-generation task: a decoder-only model (GPT-2) continues prompts, as transformers'
TextGenerationPipeline does (greedy, sampling or beam search; the KV cache in the graph)."""

from __future__ import annotations

from numbers import Integral
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from .generation import GenerationPipeline
from .text import check_batch_size, encode_texts


class TextGenerationPipeline(GenerationPipeline):
    """``[{"generated_text": prompt + continuation}]`` per prompt (one dict per returned
    sequence); ``return_full_text=False`` gives the continuation alone, ``return_tensors=True``
    the token ids.

    >>> generate = pipeline("text-generation", model="gpt2-bundle")         # doctest: +SKIP
    >>> generate("Hello, I'm a language model,", do_sample=False)   # doctest: +SKIP
    [{'generated_text': "Hello, I'm a language model, and I'm not..."}]
    """

    task = "text-generation"
    # transformers' pipeline defaults: sampling at temperature 0.7, 256 new tokens (a model's
    # own generation_config.json overrides them; so do call arguments).
    pipeline_generation_defaults: ClassVar = {"max_new_tokens": 256, "do_sample": True,
                                              "temperature": 0.7}
    parameters = {
        "return_full_text": None, "return_tensors": None, "return_text": None,
        "clean_up_tokenization_spaces": True, "prefix": None, "handle_long_generation": None,
        "stop_sequence": None, "truncation": None, "max_length": None,
        "skip_special_tokens": True, "add_special_tokens": None, "padding": None,
        "batch_size": 1, "streamer": None,
    }

    def __call__(self, text_inputs, **kwargs):
        own, generation = self._split(kwargs)
        args = self.arguments(own)
        generation = {**self._init_generation, **generation}
        if args["max_length"] is not None:  # a tokenizer argument and a generate one
            generation["max_length"] = args["max_length"]
        if args["stop_sequence"] is not None:
            generation["eos_token_id"] = self.stop_sequence_ids(args["stop_sequence"])
        prefix = args["prefix"] if args["prefix"] is not None else (self.prefix or "")
        if prefix:  # the new tokens are counted after the prefix, as transformers does
            length = len(self.tokenizer.encode_batch([prefix], add_special_tokens=False)[0].ids)
            generation = self._after_prefix(generation, length)
        config = self.call_config(generation)
        full_text = self._return_type(args)
        prompts, single = self.prompts(text_inputs)
        batch_size = check_batch_size(args["batch_size"])
        if args["streamer"] is not None and (len(prompts) > 1 or config.num_return_sequences > 1):
            raise InputError("Streaming follows one prompt and one sequence. Note: stream the "
                             "prompts one at a time, with num_return_sequences=1.")
        results = []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            results += self._generate(chunk, prefix, args, config, full_text)
        return results[0] if single else results

    def _after_prefix(self, generation: dict, prefix_length: int) -> dict:
        """transformers counts max_length (and min_length) after the prefix."""
        generation = dict(generation)
        if "max_new_tokens" not in generation and self.generation_config.max_new_tokens is None:
            max_length = generation.get("max_length") or self.generation_config.max_length
            if _is_count(max_length):  # anything else is refused when the settings resolve
                generation["max_length"] = max_length + prefix_length
        if "min_new_tokens" not in generation and _is_count(generation.get("min_length")):
            generation["min_length"] += prefix_length
        return generation

    @staticmethod
    def _return_type(args) -> str | None:
        """"full", "new" or "tensors", as transformers' _sanitize_parameters decides."""
        full, tensors, text = args["return_full_text"], args["return_tensors"], args["return_text"]
        if full is not None:
            if text is not None or tensors is not None:
                raise InputError("return_full_text cannot be combined with return_text or "
                                 "return_tensors. Note: pass only one of them.")
            return "full" if full else "new"
        if tensors is not None:
            if text is not None:
                raise InputError("return_tensors cannot be combined with return_text. Note: "
                                 "pass only one of them.")
            return "tensors" if tensors else "full"
        return "full"

    # --- one batch --------------------------------------------------------------------------
    def _encode(self, texts: list[str], args, bos: int | None
                ) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        """Left-padded ids and mask, and which prompts were empty: those start from the BOS
        token, as transformers starts an empty prompt."""
        options: dict[str, Any] = {}
        if args["add_special_tokens"] is not None:
            options["add_special_tokens"] = bool(args["add_special_tokens"])
        if args["truncation"]:
            options.update(truncation=args["truncation"], max_length=args["max_length"])
        encodings = encode_texts(self.tokenizer, texts, **options)
        if args["handle_long_generation"] not in (None, "hole"):
            raise InputError(f"handle_long_generation={args['handle_long_generation']!r} is not "
                             "known. Note: use None or 'hole'.")
        rows = [list(e.ids) for e in encodings]
        empty = [not row for row in rows]
        if any(empty):
            if bos is None:
                raise InputError(
                    "A prompt is empty and the model has no BOS token to start from. Note: "
                    "give a prompt of at least one token."
                )
            rows = [row or [bos] for row in rows]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        if pad is None:  # GPT-2 has none; masked positions are never read
            pad = self.generation_config.pad_token_id or 0
            if not 0 <= pad < self.model.vocab_size:  # but the graph looks them up all the same
                pad = 0
        ids = np.full((len(rows), width), pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):  # left padding: every row ends where generation starts
            ids[i, width - len(row):] = row
            mask[i, width - len(row):] = 1
        return ids, mask, empty

    def _generate(self, texts, prefix, args, config, full_text) -> list:
        ids, mask, empty = self._encode([prefix + text for text in texts], args,
                                        config.bos_token_id)
        if args["handle_long_generation"] == "hole":
            ids, mask = self._hole(ids, mask, config)
        self._check_length(ids.shape[1])
        output = self.generate_ids(ids, mask, config, streamer=args["streamer"],
                                   skip_special_tokens=args["skip_special_tokens"])
        per_prompt = len(output.sequences) // len(texts)
        width = ids.shape[1]
        results = []
        for row, text in enumerate(texts):
            sequences = output.sequences[row * per_prompt:(row + 1) * per_prompt]
            # without the left padding: what transformers decodes for a lone prompt
            sequences = [np.concatenate([seq[:width][mask[row] > 0], seq[width:]])
                         for seq in sequences]
            prompt = None if empty[row] else ids[row][mask[row] > 0]
            results.append([self._record(seq, prompt, text, args, full_text)
                            for seq in sequences])
        return results

    def _record(self, sequence, prompt, text: str, args, full_text) -> dict:
        if full_text == "tensors":
            return {"generated_token_ids": sequence.tolist()}
        options = {"skip_special_tokens": args["skip_special_tokens"],
                   "clean_up_tokenization_spaces": args["clean_up_tokenization_spaces"]}
        decoded = self.tokenizer.decode(sequence.tolist(), **options)
        start = 0 if prompt is None else len(self.tokenizer.decode(prompt.tolist(), **options))
        new = decoded[start:]
        return {"generated_text": text + new if full_text == "full" else new}

    def _hole(self, ids, mask, config):
        """handle_long_generation="hole": keep the prompt's end so that it and the new tokens
        fit the model."""
        limit = self.tokenizer.model_max_length or self.max_positions
        new = config.max_new_tokens
        if new is None:
            new = config.max_length - ids.shape[1]
            if new < 0:
                raise InputError("Cannot tell how many new tokens are wanted. Note: pass "
                                 "max_new_tokens.")
        if limit and ids.shape[1] + new > limit:
            keep = limit - new
            if keep <= 0:
                raise InputError(f"max_new_tokens={new} leaves no room for the prompt in the "
                                 f"model's {limit} positions. Note: lower max_new_tokens.")
            ids, mask = ids[:, -keep:], mask[:, -keep:]
        return ids, mask

    def _check_length(self, length: int) -> None:
        if self.max_positions is not None and length > self.max_positions:
            raise InputError(
                f"The prompt is {length} tokens long, but the model takes at most "
                f"{self.max_positions} positions. Note: shorten the prompt, pass "
                "truncation=True with max_length, or handle_long_generation='hole'."
            )


def _is_count(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)
