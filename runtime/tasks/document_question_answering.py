"""The document-question-answering task for Donut, as transformers' DocumentQuestionAnswering
pipeline runs a vision-encoder-decoder model: no OCR; the decoder starts from the task prompt
``<s_docvqa><s_question>{question}</s_question><s_answer>`` and generates the answer, which is
read back from between ``<s_answer>`` and ``</s_answer>`` (None when the model closes no
answer). LayoutLM-style extractive models (word boxes from OCR) are not served here."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from numbers import Integral

import numpy as np

from ..errors import BundleError, InputError
from .base import config_section
from .image_to_text import ImageToTextPipeline

TASK_PROMPT = "<s_docvqa><s_question>{question}</s_question><s_answer>"


class DocumentQuestionAnsweringPipeline(ImageToTextPipeline):
    """``[{"answer": ...}]`` per question (a list of such lists for a list of inputs).

    Call it with an image and a question, or with ``{"image": ..., "question": ...}`` dicts
    (one or a list). ``top_k`` is checked as in transformers and changes nothing: Donut gives
    one answer. Generation settings are taken as for image-to-text (transformers takes them
    only in ``pipeline(...)``; here calls take them too).

    >>> ask = pipeline("document-question-answering", model="donut-docvqa-bundle")  # doctest: +SKIP
    >>> ask("invoice.png", "What is the invoice number?")                          # doctest: +SKIP
    [{'answer': 'us-001'}]
    """

    task = "document-question-answering"
    pipeline_generation_defaults = {"max_new_tokens": 256}
    parameters = {"top_k": 1, "timeout": None}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        encoder = config_section(self.config, "encoder").get("model_type")
        if encoder != "donut-swin":
            raise BundleError(
                f"document-question-answering runs Donut (a donut-swin encoder), and this "
                f"bundle's encoder is {repr(encoder)[:80]} (transformers refuses it too). "
                "Note: use the image-to-text task for it.")
        missing = [token for token in ("<s_docvqa>", "<s_answer>", "</s_answer>")
                   if self.tokenizer.token_to_id(token) is None]
        if missing:
            raise BundleError(
                f"The bundle's tokenizer has no {missing} token: it is not a Donut fine-tuned "
                "for document question answering (DocVQA). Note: export such a checkpoint.")
        self._check_top_k(self.defaults)

    def _check_prompt(self, args) -> None:
        pass  # no prompt argument: the question makes the prompt

    @staticmethod
    def _check_top_k(args):
        top_k = args["top_k"]
        if not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(f"top_k must be an integer >= 1, got {top_k!r}.")

    # --- running ----------------------------------------------------------------------------
    def __call__(self, image=None, question=None, word_boxes=None, **kwargs):
        if isinstance(question, str):
            inputs, single = [{"image": image, "question": question}], True
        elif question is not None:
            raise InputError(f"question must be a string, got {type(question).__name__}.")
        else:
            inputs, single = self._documents(image)
        own, generation, prompt = self._call_arguments(kwargs)
        if prompt is not None:
            raise InputError("decoder_input_ids cannot be given: the question makes the "
                             "decoder's prompt. Note: leave it out.")
        self._check_top_k(self.arguments(own))
        config = self.call_config(generation)
        results = []
        for item in inputs:
            images, _ = self.images(item["image"])
            if len(images) != 1:
                raise InputError(f"Each question is about one document image, got "
                                 f"{len(images)}. Note: pass one image per question.")
            results.append([self._answer(images[0], item["question"], config)])
        return results[0] if single else results

    @staticmethod
    def _documents(inputs) -> tuple[list[dict], bool]:
        """({"image", "question"} dicts, whether one was given)."""
        items, single = ([inputs], True) if isinstance(inputs, Mapping) else (inputs, False)
        if single is False and not (isinstance(items, Iterable)
                                    and not isinstance(items, (str, bytes))):
            items = None
        items = list(items) if items is not None else []
        note = ("Note: pass pipe(image, question), or {'image': ..., 'question': ...} dicts "
                "(one or a list).")
        if not items:
            raise InputError("document-question-answering needs an image and a question. "
                             + note)
        for item in items:
            if (not isinstance(item, Mapping) or not isinstance(item.get("question"), str)
                    or item.get("image") is None):
                raise InputError(f"Expected an image with a question, got {repr(item)[:80]}. "
                                 + note)
        return items, single

    def _prompt(self, question: str) -> np.ndarray:
        text = TASK_PROMPT.format(question=question)
        return np.array([self.tokenizer.encode_batch([text], add_special_tokens=False)[0].ids],
                        dtype=np.int64)

    def generate_tokens(self, source, **settings) -> list[int]:
        """The new token ids (after the task prompt) for ``(image, question)``, with the
        pipeline's generation settings and ``settings`` (see ImageToTextPipeline's)."""
        image, question = source
        if not isinstance(question, str):
            raise InputError(f"question must be a string, got {type(question).__name__}.")
        _, generation, _ = self._call_arguments(settings)
        images, _ = self.images(image)
        prompt = self._prompt(question)
        output = self.generate_image(images[0], self.call_config(generation), prompt)
        return output.sequences[0][prompt.shape[1]:].tolist()

    def answer_of(self, question: str, tokens) -> str | None:
        """The answer the pipeline reads from the new tokens generated for ``question``."""
        prompt = self._prompt(question)[0].tolist()
        return self._parse(self.tokenizer.decode([*prompt, *tokens]))

    def _answer(self, image, question: str, config) -> dict:
        """transformers' preprocess, _forward and postprocess_encoder_decoder_single."""
        output = self.generate_image(image, config, self._prompt(question))
        return {"answer": self._parse(self.tokenizer.decode(output.sequences[0].tolist()))}

    def _parse(self, sequence: str) -> str | None:
        for key in ("eos_token", "pad_token"):
            token = self.tokenizer.special_tokens.get(key)
            if token:
                sequence = sequence.replace(token, "")
        sequence = re.sub(r"<.*?>", "", sequence, count=1).strip()  # the task start token
        answer = re.search(r"<s_answer>(.*)</s_answer>", sequence)
        return answer.group(1).strip() if answer is not None else None
