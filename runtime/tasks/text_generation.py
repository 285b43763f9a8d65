"""The text-generation task: a decoder-only model (GPT-2, Llama, ...) continues prompts, or
answers chats, as transformers' TextGenerationPipeline does (greedy, sampling or beam search;
the KV cache in the graph)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from numbers import Integral
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from ..generation import iterate
from ..text.chat import ChatTemplate, check_chat
from .generation import GenerationPipeline
from .text import check_batch_size, encode_texts

# tokenizer_encode_kwargs keys that go to the tokenizer (padding and, for chats,
# add_special_tokens are ignored, as the call's own are), and the apply_chat_template arguments
# that transformers' pipeline sets itself (passing them again there is a TypeError). Every other
# key of a chat's is a rendering argument (tools, documents, chat_template) or a template
# variable (enable_thinking=False, ...).
_ENCODE_KEYS = ("add_special_tokens", "truncation", "max_length", "padding")
_SET_BY_THE_PIPELINE = ("add_generation_prompt", "continue_final_message", "tokenize",
                        "return_dict", "return_tensors", "return_assistant_tokens_mask",
                        "tokenizer_kwargs", "conversation", "messages")


class TextGenerationPipeline(GenerationPipeline):
    """``[{"generated_text": prompt + continuation}]`` per prompt (one dict per returned
    sequence); ``return_full_text=False`` gives the continuation alone, ``return_tensors=True``
    the token ids.

    A chat (a list of ``{"role", "content"}`` messages, or a list of chats) is made into a
    prompt by the bundle's chat template; its ``generated_text`` is the chat with the reply as a
    new assistant message, or, when the chat ends with an assistant message (or
    ``continue_final_message=True``), with the reply continuing that message.

    >>> generate = pipeline("text-generation", model="gpt2-bundle")         # doctest: +SKIP
    >>> generate("Hello, I'm a language model,", do_sample=False)   # doctest: +SKIP
    [{'generated_text': "Hello, I'm a language model, and I'm not..."}]
    >>> chat = pipeline("text-generation", model="llama-bundle")           # doctest: +SKIP
    >>> chat([{"role": "user", "content": "Hi!"}], max_new_tokens=8)    # doctest: +SKIP
    [{'generated_text': [{'role': 'user', 'content': 'Hi!'},
                         {'role': 'assistant', 'content': 'Hello! How can I help?'}]}]
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
        "batch_size": 1, "streamer": None, "continue_final_message": None,
        "tokenizer_encode_kwargs": None,
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
        if prefix:  # the new tokens are counted after the prefix, as transformers does (for
            # chats too, though a chat's prompt has no prefix)
            length = len(self.tokenizer.encode_batch([prefix], add_special_tokens=False)[0].ids)
            generation = self._after_prefix(generation, length)
        config = self.call_config(generation)
        full_text = self._return_type(args)
        if args["continue_final_message"] not in (None, True, False):
            raise InputError(f"continue_final_message must be True, False or None, got "
                             f"{args['continue_final_message']!r}.")
        inputs, single, chats = self._inputs(text_inputs)
        encode_kwargs = _encode_kwargs(args["tokenizer_encode_kwargs"], chats)
        texts = (self._render(inputs, args, encode_kwargs) if chats
                 else [prefix + text for text in inputs])
        options = self._encode_options(args, encode_kwargs, chats)
        batch_size = check_batch_size(args["batch_size"])
        if args["streamer"] is not None and (len(inputs) > 1 or config.num_return_sequences > 1):
            raise InputError("Streaming follows one prompt and one sequence. Note: stream the "
                             "prompts one at a time, with num_return_sequences=1.")
        results = []
        for start in range(0, len(inputs), batch_size):
            chunk = slice(start, start + batch_size)
            results += self._generate(texts[chunk], inputs[chunk], options, args, config,
                                      full_text)
        return results[0] if single else results

    def stream(self, inputs, **kwargs) -> Iterator[str]:
        """The generated text of one prompt or one chat, piece by piece, as it is generated
        (greedy or sampling: beam search decides only at the end)."""
        if isinstance(inputs, str) or not _looks_like_chat(inputs):
            return super().stream(inputs, **kwargs)
        check_chat(inputs)
        if "streamer" in kwargs:
            raise InputError("stream() makes its own streamer. Note: drop streamer=.")
        return iterate(lambda on_text: self(inputs, streamer=on_text, **kwargs))

    # --- chats ------------------------------------------------------------------------------
    def _inputs(self, inputs) -> tuple[list, bool, bool]:
        """(the prompts or the chats, whether one was given, whether they are chats): a list
        whose first item is a message is one chat, one whose first item is a list is a list of
        chats, as transformers tells them apart."""
        if isinstance(inputs, Mapping):
            raise InputError("Got one message (a dict), not a chat. Note: a chat is a list of "
                             'messages like [{"role": "user", "content": "Hello"}]; wrap the '
                             "message in a list.")
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Iterable):
            prompts, single = self.prompts(inputs)
            return prompts, single, False
        items = list(inputs)
        if items and isinstance(items[0], Mapping):
            return [check_chat(items)], True, True
        if items and isinstance(items[0], (list, tuple)):
            return [check_chat(chat, f"Chat {number}")
                    for number, chat in enumerate(items, 1)], False, True
        if any(isinstance(item, (Mapping, list, tuple)) for item in items):
            raise InputError("The inputs mix texts with chats (or messages). Note: pass a "
                             "text, a list of texts, one chat (a list of messages) or a list "
                             "of chats.")
        prompts, _ = self.prompts(items)
        return prompts, False, False

    @property
    def chat_template(self) -> ChatTemplate:
        """The bundle's chat template, read when the first chat comes (a bundle used for
        texts alone never reads it)."""
        template = getattr(self, "_chat_template", None)
        if template is None:
            directory = self.bundle.path if self.bundle is not None else None
            template = ChatTemplate.from_dir(directory, self.tokenizer)
            self._chat_template = template
        return template

    def _render(self, chats: list, args, encode_kwargs: dict) -> list[str]:
        """Each chat's prompt text, as transformers' preprocess makes it: a generation prompt
        after the chat, or the final message left open to be continued."""
        render = {key: value for key, value in encode_kwargs.items()
                  if key not in _ENCODE_KEYS}
        texts = []
        for chat in chats:
            continued = _continues(chat, args)
            texts += self.chat_template.render([chat], add_generation_prompt=not continued,
                                               continue_final_message=continued, **render)
        return texts

    # --- settings ---------------------------------------------------------------------------
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

    @staticmethod
    def _encode_options(args, encode_kwargs: dict, chats: bool) -> dict[str, Any]:
        """The tokenizer's arguments: the call's, overridden by tokenizer_encode_kwargs; a
        chat's text holds its special tokens already (add_special_tokens is ignored)."""
        given = {"add_special_tokens": args["add_special_tokens"],
                 "truncation": args["truncation"], "max_length": args["max_length"]}
        given.update({key: value for key, value in encode_kwargs.items()
                      if key in given})
        options: dict[str, Any] = {}
        if chats:
            options["add_special_tokens"] = False
        elif given["add_special_tokens"] is not None:
            options["add_special_tokens"] = bool(given["add_special_tokens"])
        if given["truncation"]:
            options.update(truncation=given["truncation"], max_length=given["max_length"])
        return options

    # --- one batch --------------------------------------------------------------------------
    def _encode(self, texts: list[str], options: dict, args, bos: int | None
                ) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        """Left-padded ids and mask, and which prompts were empty: those start from the BOS
        token, as transformers starts an empty prompt."""
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

    def _generate(self, texts: list[str], inputs: list, options, args, config,
                  full_text) -> list:
        """``texts``: the prompts to encode; ``inputs``: what was given for each (the text
        without the prefix, or the chat)."""
        ids, mask, empty = self._encode(texts, options, args, config.bos_token_id)
        if args["handle_long_generation"] == "hole":
            ids, mask = self._hole(ids, mask, config)
        self._check_length(ids.shape[1])
        output = self.generate_ids(ids, mask, config, streamer=args["streamer"],
                                   skip_special_tokens=args["skip_special_tokens"])
        per_prompt = len(output.sequences) // len(texts)
        width = ids.shape[1]
        results = []
        for row, given in enumerate(inputs):
            sequences = output.sequences[row * per_prompt:(row + 1) * per_prompt]
            # without the left padding: what transformers decodes for a lone prompt
            sequences = [np.concatenate([seq[:width][mask[row] > 0], seq[width:]])
                         for seq in sequences]
            prompt = None if empty[row] else ids[row][mask[row] > 0]
            results.append([self._record(seq, prompt, given, args, full_text)
                            for seq in sequences])
        return results

    def _record(self, sequence, prompt, given, args, full_text) -> dict:
        if full_text == "tensors":
            return {"generated_token_ids": sequence.tolist()}
        options = {"skip_special_tokens": args["skip_special_tokens"],
                   "clean_up_tokenization_spaces": args["clean_up_tokenization_spaces"]}
        decoded = self.tokenizer.decode(sequence.tolist(), **options)
        start = 0 if prompt is None else len(self.tokenizer.decode(prompt.tolist(), **options))
        new = decoded[start:]
        if full_text != "full":
            return {"generated_text": new}
        if isinstance(given, str):
            return {"generated_text": given + new}
        return {"generated_text": _chat_with_reply(given, new, _continues(given, args))}

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


# --- chats ----------------------------------------------------------------------------------
def _looks_like_chat(inputs) -> bool:
    """Whether stream() was given one chat (a list whose first item is a message)."""
    return (isinstance(inputs, (list, tuple)) and bool(inputs)
            and isinstance(inputs[0], Mapping))


def _continues(chat: list, args) -> bool:
    """Whether the reply continues the chat's final message: continue_final_message, or by
    default when that message is the assistant's (a prefill), as in transformers."""
    if args["continue_final_message"] is not None:
        return args["continue_final_message"]
    return chat[-1]["role"] == "assistant"


def _chat_with_reply(chat: list, reply: str, continued: bool) -> list:
    """transformers' full text of a chat: the chat with the reply as a new assistant message,
    or with the final message continued (then it keeps only its role and content)."""
    if not continued:
        return [*chat, {"role": "assistant", "content": reply}]
    final = chat[-1]
    content = final["content"]
    if isinstance(content, str):
        content = content + reply
    else:  # text blocks: the last one continues (transformers fails on them here)
        content = [dict(block) for block in content]
        last = max(i for i, block in enumerate(content) if "text" in block)
        content[last]["text"] += reply
    return [*chat[:-1], {"role": final["role"], "content": content}]


def _encode_kwargs(given, chats: bool) -> dict:
    """tokenizer_encode_kwargs, checked: transformers passes it to the tokenizer for texts, and
    to apply_chat_template for chats."""
    if given is None:
        return {}
    if not isinstance(given, Mapping) or not all(isinstance(key, str) for key in given):
        raise InputError(f"tokenizer_encode_kwargs must be a dict of arguments, got "
                         f"{type(given).__name__}: {given!r:.80}.")
    given = dict(given)
    if chats:
        refused = sorted(set(given) & set(_SET_BY_THE_PIPELINE))
        if refused:
            raise InputError(
                f"tokenizer_encode_kwargs sets {refused}, which the pipeline sets itself for "
                "chats. Note: pass continue_final_message to the call; the others are "
                "not for this pipeline.")
        return given
    unknown = sorted(set(given) - set(_ENCODE_KEYS))
    if unknown:
        raise InputError(
            f"tokenizer_encode_kwargs has {unknown}, which the runtime's tokenizer does not "
            f"take for text prompts. Note: it takes {list(_ENCODE_KEYS)}; tools, documents, "
            "chat_template and template variables are for chats.")
    return given
