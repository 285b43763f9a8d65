"""question-answering: the runtime's pipeline against transformers' on every tiny checkpoint."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from checkpoints import TINY_CONFIGS
from compare import assert_same
from long_text_checkpoints import TINY_LONG_TEXT

from runtime.errors import InputError

# transformers warns on positional inputs, which the runtime accepts the same way.
pytestmark = pytest.mark.filterwarnings("ignore:Passing a list of SQuAD examples:FutureWarning")

TASK = "question-answering"
MODEL_TYPES = sorted(TINY_CONFIGS)

SHORT = "My name is Wolfgang and I live in Berlin."
ACCENTS = ("Café Zürich, où l'on mange; très bien! Il habite à Genève (Suisse), près du Rhône. "
           "«Naïve» façade — 3,5 km — n'est-ce pas?")
MEDIUM = ("The Rhine rises in the Swiss Alps, flows through Lake Constance, and reaches the North "
          "Sea at Rotterdam. Its length is about 1,230 kilometres; Basel, Strasbourg, Cologne "
          "and Düsseldorf lie on its banks.")
# Over 384 tokens: several windows with the default max_seq_len and doc_stride.
LONG = " ".join(
    f"Chapter {i}: the ferry from Genève to Évian leaves at {i % 12 + 1} o'clock, "
    f"and tickets cost {i * 3} francs."
    for i in range(30)
)

# name -> (call inputs, call arguments)
CASES = {
    "short": (dict(question="Where do I live?", context=SHORT), {}),
    "accents-top3": (dict(question="Où habite-t-il ?", context=ACCENTS), dict(top_k=3)),
    "impossible": (dict(question="Who is the mayor?", context=MEDIUM),
                   dict(handle_impossible_answer=True)),
    "impossible-top3": (dict(question="Which sea?", context=MEDIUM),
                        dict(top_k=3, handle_impossible_answer=True)),
    # A large top_k lists the null answer (and the zero-score spans transformers lets through).
    "impossible-all": (dict(question="Which city?", context="Berlin, Germany."),
                       dict(top_k=20, handle_impossible_answer=True)),
    "impossible-windows": (dict(question="Where does it rise?", context=MEDIUM),
                           dict(max_seq_len=24, doc_stride=5, max_answer_len=1, top_k=60,
                                handle_impossible_answer=True)),
    "max-answer-len": (dict(question="How long is the Rhine?", context=MEDIUM),
                       dict(max_answer_len=2, top_k=3)),
    "long-default-windows": (dict(question="When does the ferry leave?", context=LONG),
                             dict(top_k=3)),
    "small-windows": (dict(question="Where does it rise?", context=MEDIUM),
                      dict(max_seq_len=24, doc_stride=5, top_k=3)),
    "small-windows-no-align": (dict(question="Where does it rise?", context=ACCENTS),
                               dict(max_seq_len=20, doc_stride=3, align_to_words=False)),
    "questions-one-context": (dict(question=["Where?", "Which sea?", "How long?"],
                                   context=MEDIUM), dict(top_k=3)),
    "questions-contexts": (dict(question=["Where do I live?", "Où habite-t-il ?"],
                                context=[SHORT, ACCENTS]), {}),
}


@pytest.fixture
def qa(runtime_pipeline, reference_pipeline):
    """qa(model_type, **defaults) -> (runtime pipeline, transformers pipeline)."""

    def make(model_type: str, **defaults):
        return runtime_pipeline(model_type, TASK, **defaults), reference_pipeline(model_type, TASK)

    return make


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_matches_transformers(qa, model_type, case):
    runtime, reference = qa(model_type)
    inputs, arguments = CASES[case]
    expected = reference(**inputs, **arguments)
    assert_same(runtime(**inputs, **arguments), expected, f"{model_type}/{case}")


def test_cases_cover_what_they_claim(qa):
    runtime, reference = qa("bert")
    tok = runtime.tokenizer
    question, context = CASES["long-default-windows"][0].values()
    windows = tok.encode_batch([question], [context], truncation="only_second", max_length=384,
                               stride=128)[0]
    assert len(windows.overflowing) >= 1  # several windows with the defaults
    question, context = CASES["small-windows"][0].values()
    windows = tok.encode_batch([question], [context], truncation="only_second", max_length=24,
                               stride=5)[0]
    assert len(windows.overflowing) >= 3
    # top_k=3 keeps three answers, and handle_impossible_answer can put "" first.
    assert len(runtime(**CASES["accents-top3"][0], top_k=3)) == 3
    for case in ("impossible-all", "impossible-windows"):
        inputs, arguments = CASES[case]
        null = [a for a in runtime(**inputs, **arguments) if (a["start"], a["end"]) == (0, 0)]
        assert null and null[0]["answer"] == "" and null[0]["score"] > 0, case


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_input_forms(qa, model_type):
    runtime, reference = qa(model_type)
    pair = {"question": "Où habite-t-il ?", "context": ACCENTS}
    other = {"question": "Where do I live?", "context": SHORT}
    assert_same(runtime(pair), reference(pair), "dict")
    assert_same(runtime([pair]), reference([pair]), "list of one dict")
    assert_same(runtime([pair, other]), reference([pair, other]), "list of dicts")
    assert_same(runtime(pair, other), reference(pair, other), "dicts as arguments")
    assert_same(runtime(pair["question"], pair["context"]),
                reference(pair["question"], pair["context"]), "positional strings")
    assert_same(runtime(question=[pair["question"]], context=pair["context"]),
                reference(question=[pair["question"]], context=pair["context"]), "one question")
    assert_same(runtime(pair, top_k=3), reference(pair, top_k=3), "dict, top_k=3")
    assert runtime([]) == []


def test_pipeline_defaults_and_call_arguments(qa):
    runtime, reference = qa("albert", top_k=3, max_answer_len=3)
    inputs = CASES["short"][0]
    assert_same(runtime(**inputs), reference(**inputs, top_k=3, max_answer_len=3), "defaults")
    assert_same(runtime(**inputs, top_k=1), reference(**inputs, top_k=1, max_answer_len=3),
                "call overrides")


def test_large_stride_is_fine_without_windows(qa):
    # tokenizers only checks doc_stride <= max_seq_len - 2 until a window is actually needed.
    runtime, reference = qa("bert")
    inputs = dict(question="Where?", context=SHORT, max_seq_len=16, doc_stride=14)
    assert_same(runtime(**inputs), reference(**inputs), "stride 14")


def test_whitespace_only_inputs(qa):
    # transformers accepts them (only "" is rejected) and answers "" with score 0.
    runtime, reference = qa("bert")
    inputs = {"question": " ", "context": "   "}
    assert_same(runtime(inputs), reference(inputs), "blank")


def test_context_first_with_left_padding(qa):
    # A tokenizer that pads on the left puts the context first and truncates it ("only_first").
    runtime, reference = qa("bert")
    runtime.tokenizer.padding_side = "left"
    reference.tokenizer.padding_side = "left"
    try:
        for inputs, arguments in (CASES["accents-top3"], CASES["small-windows"]):
            assert_same(runtime(**inputs, **arguments), reference(**inputs, **arguments),
                        "left padding")
    finally:
        reference.tokenizer.padding_side = "right"


BAD_INPUTS = {
    "empty question": ((), dict(question="", context=SHORT)),
    "empty context": ((), dict(question="Where?", context="")),
    "empty in dict": (({"question": "Where?", "context": ""},), {}),
    "missing context": ((), dict(question="Where?")),
    "missing question": ((), dict(context=SHORT)),
    "no inputs": ((), {}),
    "dict without context": (({"question": "Where?"},), {}),
    "None context": (({"question": "Where?", "context": None},), {}),
    "non-string question": (({"question": 42, "context": SHORT},), {}),
    "non-string in list": (([{"question": "Where?", "context": SHORT}, "Where?"],), {}),
    "one plain string": (("Where do I live?",), {}),
    "question str, contexts list": ((), dict(question="Where?", context=[SHORT])),
    "lengths differ": ((), dict(question=["Where?", "Who?"], context=[SHORT])),
    "max_answer_len 0": ((), dict(question="Where?", context=SHORT, max_answer_len=0)),
    "top_k 0": ((), dict(question="Where?", context=SHORT, top_k=0)),
    "doc_stride > max_seq_len": ((), dict(question="Where?", context=SHORT, max_seq_len=16,
                                          doc_stride=17)),
    "doc_stride > max_seq_len - 2": ((), dict(question="Where?", context=SHORT, max_seq_len=16,
                                              doc_stride=15)),
    "doc_stride >= context room": ((), dict(question="Where do I live?", context=MEDIUM,
                                            max_seq_len=16, doc_stride=9)),
    "question fills the window": ((), dict(question="Where do I live in this city?",
                                           context=MEDIUM, max_seq_len=9, doc_stride=0)),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_raises_like_transformers(qa, name):
    runtime, reference = qa("bert")
    args, kwargs = BAD_INPUTS[name]
    with pytest.raises(InputError, match="Note:"):
        runtime(*args, **kwargs)
    # transformers rejects it too (one case is a tokenizers panic, not an Exception).
    with pytest.raises(BaseException):  # noqa: B017
        reference(*args, **kwargs)


@pytest.mark.parametrize("arguments", [
    dict(topk=2), dict(padding="max_length"), dict(top_k=1.5), dict(doc_stride=-1),
    dict(max_seq_len=0), dict(handle_impossible_answer="yes"), dict(align_to_words=None),
    dict(max_seq_len=600),
])
def test_bad_arguments(qa, arguments):
    runtime, _ = qa("bert")
    with pytest.raises(InputError, match="Note:"):
        runtime(question="Where?", context=LONG, **arguments)


def test_bad_defaults_and_mixed_inputs(qa, runtime_pipeline):
    with pytest.raises(InputError, match="top_k"):
        runtime_pipeline("bert", TASK, topk=3)
    runtime, _ = qa("bert")
    with pytest.raises(InputError, match="Note:"):
        runtime({"question": "Where?", "context": SHORT}, question="Who?", context=SHORT)
    with pytest.raises(InputError, match="Note:"):
        runtime({"question": "Where?", "context": SHORT, "answer": "x"})


def test_module_never_imports_torch_or_transformers():
    import runtime.tasks.question_answering as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"torch", "transformers"}


# Longformer (global attention on <s> and the question, fed by the runtime), BigBird (its head
# masks the question's logits in the graph) and XLNet (left padding: the context first), with
# tokenizers of their own kinds: tests/support/long_text_checkpoints.py.
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("model_type", sorted(m for m, task in TINY_LONG_TEXT if task == TASK))
def test_long_text_encoders_match_transformers(qa, model_type, case):
    runtime, reference = qa(model_type)
    inputs, arguments = CASES[case]
    try:
        expected = reference(**inputs, **arguments)
    except Exception as error:  # windows too small for these vocabularies' longer questions
        with pytest.raises(InputError):
            runtime(**inputs, **arguments)
        assert "doc_stride" in str(error) or "max_seq_len" in str(error), error
        return
    assert_same(runtime(**inputs, **arguments), expected, f"{model_type}/{case}")
