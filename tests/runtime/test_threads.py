"""One pipeline shared by several threads gives what it gives serially (tokenizers are
per-thread, ONNX Runtime sessions are safe to share)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from compare import assert_same

CONTEXT = ("edgeport exports checkpoints to ONNX. The runtime runs them without PyTorch on CPUs, "
           "phones and Jetson boards. " * 12)
QUESTIONS = ["What does edgeport export?", "Where does the runtime run?", "What is not needed?",
             "Which boards?"] * 4
TEXTS = ["Ann lives in Paris.", "Bob works for Acme Corp in Berlin.", "", "ok " * 700] * 4


def _parallel(function, items):
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(function, items))


def test_question_answering_from_several_threads(runtime_pipeline):
    qa = runtime_pipeline("bert", "question-answering", max_seq_len=48, doc_stride=16)
    serial = [qa(question=q, context=CONTEXT) for q in QUESTIONS]
    assert_same(_parallel(lambda q: qa(question=q, context=CONTEXT), QUESTIONS), serial, atol=1e-6)


def test_token_classification_from_several_threads(runtime_pipeline):
    ner = runtime_pipeline("roberta", "token-classification", aggregation_strategy="simple")
    serial = [ner(text) for text in TEXTS]
    assert_same(_parallel(ner, TEXTS), serial, atol=1e-6)
