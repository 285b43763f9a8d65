"""Longformer's global attention mask, made as transformers' heads make it when none is given.

A graph that takes ``global_attention_mask`` (a Longformer classifier or question answerer) is
fed the tokens its head would attend to globally; the manifest's ``preprocessing`` names which
(``"global_attention"``), and this module makes the mask from the padded input ids:

- ``"question"`` (LongformerForQuestionAnswering): every token before the first separator, the
  <s> and the question. transformers requires exactly three separators in every row
  (``<s> question </s></s> context </s>``) and fails otherwise; so does this.
- ``"first"`` (LongformerForSequenceClassification): the first token, <s>.

>>> ids = np.array([[0, 7, 8, 2, 2, 9, 2, 1]])
>>> global_attention_mask("question", ids, sep_token_id=2)
array([[1, 1, 1, 0, 0, 0, 0, 0]])
>>> global_attention_mask("first", ids, sep_token_id=2)
array([[1, 0, 0, 0, 0, 0, 0, 0]])
"""

from __future__ import annotations

import numpy as np

from ..errors import BundleError, InputError

RULES = ("question", "first")


def check_rule(rule) -> str:
    """The manifest's global attention rule, or a BundleError naming the known ones."""
    if rule not in RULES:
        raise BundleError(
            f"The manifest's preprocessing names global attention {str(rule)[:80]!r}, which "
            f"this edgeport does not make. Note: known are {', '.join(RULES)}; export the "
            "bundle again with this edgeport.")
    return rule


def global_attention_mask(rule: str, input_ids: np.ndarray, *, sep_token_id) -> np.ndarray:
    """The [batch, sequence] int64 mask of the tokens ``rule`` attends to globally
    (``sep_token_id``: config.json's, read for "question")."""
    mask = np.zeros(input_ids.shape, dtype=np.int64)
    if check_rule(rule) == "first":
        mask[:, 0] = 1
        return mask
    if not isinstance(sep_token_id, int) or isinstance(sep_token_id, bool) or sep_token_id < 0:
        raise BundleError(
            f"The bundle's config.json has sep_token_id={repr(sep_token_id)[:40]}, not a token "
            "id; Longformer's question answering finds the question with it. Note: fix it in "
            "config.json, or export the checkpoint again.")
    separators = input_ids == sep_token_id
    counts = separators.sum(axis=1)
    if (counts != 3).any():
        raise InputError(
            f"Question answering with Longformer needs exactly three separator tokens "
            f"({sep_token_id}) in every window, as transformers requires; got "
            f"{sorted(set(counts.tolist()))}. Note: remove separator tokens from the question "
            "and the context.")
    question_end = separators.argmax(axis=1)
    mask[np.arange(input_ids.shape[1])[None, :] < question_end[:, None]] = 1
    return mask
