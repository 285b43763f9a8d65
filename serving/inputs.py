"""The contract's inputs: which BYTES inputs a task's entry model takes, and how one request's
input tensors become the pipeline's items. Both flavors' configs, settings and model.py read
them from here.

A task of one input takes ``text``, ``image`` (an encoded image file) or ``audio`` (an encoded
audio file), and its items are the decoded elements. A task of several takes one BYTES tensor
each, of the same length, paired up by position into the dicts its pipeline takes:

>>> input_names("question-answering", None)
('question', 'context')
>>> items_from_arrays(("question", "context"), {"question": np.array([b"Who?"], dtype=object),
...                                         "context": np.array([b"Ann ran."], dtype=object)})
[{'question': 'Who?', 'context': 'Ann ran.'}]

``trajectory`` (reinforcement-learning) is one trajectory as UTF-8 JSON, the form `edgeport run`
takes (runtime.tasks.reinforcement_learning.trajectory_from_json).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from runtime.errors import InputError
from runtime.tasks.reinforcement_learning import trajectory_from_json

# Tasks whose pipeline takes more than a text, an image or an audio clip: their inputs, named
# as the keys of the dicts the pipeline takes (a list of them is one batch).
TASK_INPUTS = {
    "question-answering": ("question", "context"),
    "visual-question-answering": ("image", "question"),
    "document-question-answering": ("image", "question"),
    "reinforcement-learning": ("trajectory",),
}
TEXT_INPUTS = frozenset({"text", "question", "context"})  # UTF-8 text; image, audio: file bytes
# Pipelines that answer a list of ONE item with that item's result, not a list of one result
# (transformers' question-answering does so too): the model wraps it back.
UNWRAPS_ONE = frozenset({"question-answering"})


def input_names(task: str, pipeline_class) -> tuple[str, ...]:
    """The entry model's inputs for ``task`` run by ``pipeline_class``: those of TASK_INPUTS,
    else ``audio``, ``image`` or ``text`` by the processors the class reads."""
    if task in TASK_INPUTS:
        return TASK_INPUTS[task]
    wanted = set(pipeline_class.preprocessors)
    if "feature_extractor" in wanted:
        return ("audio",)
    if "image_processor" in wanted:
        return ("image",)
    return ("text",)


def _listed(names: Sequence[str]) -> str:
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def decode_item(name: str, value):
    """One element of the input ``name`` as the pipeline takes it: text inputs as str (UTF-8
    checked), ``trajectory`` as the dict its JSON holds, image and audio files as bytes."""
    data = value.encode() if isinstance(value, str) else bytes(value)
    if name in TEXT_INPUTS or name == "trajectory":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"The input {name!r} must be UTF-8 text.") from None
        if name == "trajectory":
            return trajectory_from_json(text, "The input 'trajectory'")
        return text
    return data


def items_from_arrays(names: Sequence[str], arrays: Mapping[str, np.ndarray | None]) -> list:
    """The pipeline's items from one request's tensors (``arrays``: input name -> its numpy
    array, None when the request lacks it): each input's decoded elements, or with several
    inputs one dict per position. InputErrors name the inputs: a missing one, one that is not
    BYTES, inputs of different lengths."""
    takes = (f"Note: this model takes {_listed(names)} (BYTES, one element per item"
             + (", paired up by position)." if len(names) > 1 else ")."))
    columns = {}
    for name in names:
        array = arrays.get(name)
        if array is None:
            raise InputError(f"The request has no input {name!r}. {takes}")
        if array.dtype != np.object_:
            raise InputError(f"The input {name!r} must be BYTES, got {array.dtype}. {takes}")
        columns[name] = array.reshape(-1)
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{name!r} {length}" for name, length in lengths.items())
        raise InputError(f"The inputs have different lengths ({sizes} elements). {takes}")
    decoded = {name: [decode_item(name, value) for value in column]
               for name, column in columns.items()}
    if len(names) == 1:
        return decoded[names[0]]
    return [dict(zip(names, values)) for values in zip(*decoded.values())]
