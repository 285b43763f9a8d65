"""End-to-end graphs of text bundles (see mobile.e2e).

The graph takes a string tensor ``text`` [N] and tokenizes it inside with an
onnxruntime-extensions op: ``BertTokenizer`` for a WordPiece tokenizer.json (BERT's normalizer
and pre-tokenizer), ``HfJsonTokenizer`` (which reads tokenizer.json and tokenizer_config.json)
for byte-level BPE and Unigram ones. Both take one text at a time here, in a Loop over the
batch: each row is truncated to the model's length as the runtime truncates (the first tokens,
then the closing special token), padded with the tokenizer's pad id to that length, and the
batch is cut to its longest row, so a batch gives the results of one text at a time. Then the
bundle's graph, then the task's postprocessing; the graph's metadata says what each output is.

A batch holds at least one text (the models take no empty batch). Texts longer than the
model are truncated (the runtime raises for them unless called with
truncation=True, the same result); a sentence-transformers bundle truncates at its
max_seq_length as sentence-transformers does.

>>> build_e2e(Bundle.load("minilm-bundle"), "fp32", Path("model_e2e.onnx"))["outputs"]
...                                                                   # doctest: +SKIP
{'embeddings': 'float32 [N, D]: sentence embeddings, mean pooling, L2-normalized'}
>>> session.run(["embeddings"], {"text": np.array(["a cat", "a dog"], dtype=object)})[0].shape
...                                                                   # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from runtime.bundle import Bundle
from runtime.errors import BundleError, InputError
from runtime.files import parse_json, read_text_file
from runtime.tasks.base import config_count, config_id2label, default_labels
from runtime.text.pooling import SentencePooling
from runtime.text.tokenizer import TextTokenizer

from .graphs import (
    CONTRIB,
    FLOAT,
    INT64,
    STRING,
    GraphBuilder,
    join,
    load_graph,
    metadata_json,
    save,
    value,
)

_TEXT_INPUT = {"text": "string [N]: the texts, UTF-8"}
_INT_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Ops whose scales come from the whole batch (dynamic quantization).
_PER_BATCH_OPS = ("DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
# tokenizer_config.json's class -> the class HfJsonTokenizer knows it as (0.15.2 reads
# RoBERTa's byte-level BPE as GPT-2's; tokenizer.json's post-processor adds <s> ... </s>).
# Only the encoders' tokenizers the tests compare: others differ in special tokens.
_HF_JSON_CLASSES = {"RobertaTokenizer": "GPT2Tokenizer",
                    "XLMRobertaTokenizer": "XLMRobertaTokenizer"}


# --- the tokenizer inside the graph -----------------------------------------------------------
class _Tokenizer:
    """What the graph needs to know of the bundle's tokenizer."""

    def __init__(self, bundle: Bundle):
        # The runtime's tokenizer checks the files (and gives the pad id, padding side and
        # length the runtime uses); the graph's op reads the same tokenizer.json.
        self.runtime = TextTokenizer.from_dir(bundle.path)
        self.json_text = read_text_file(bundle.path / "tokenizer.json", "tokenizer.json",
                                        error=BundleError)
        self.tokenizer = parse_json(self.json_text, "tokenizer.json", error=BundleError)
        self.config = self.runtime.config
        model = self.tokenizer.get("model") or {}
        self.kind = model.get("type")
        self.vocab = model.get("vocab")
        if "left" in (self.runtime.padding_side, self.runtime.truncation_side):
            raise InputError("edgeport mobile pads and truncates on the right; this tokenizer "
                             "does so on the left. Note: set padding_side and truncation_side "
                             "to right in tokenizer_config.json.")
        pad = self.runtime.pad_token_id
        self.pad_id = 0 if pad is None else pad

    def _id(self, token: str) -> int:
        found = self.runtime.token_to_id(token)
        if found is None:
            raise BundleError(f"The tokenizer has no token {token!r}, which its post-processor "
                              "adds. Note: export the bundle again.")
        return found

    def node(self, g: GraphBuilder, text: str) -> tuple[str, str]:
        """(input_ids [n], token_type_ids [n]) of one text ([1] string), special tokens added."""
        if self.kind == "WordPiece":
            return self._wordpiece(g, text)
        kind = str(self.config.get("tokenizer_class", "")).removesuffix("Fast")
        if self.kind in ("BPE", "Unigram") and kind in _HF_JSON_CLASSES:
            first, last = (self._id(t) for t in self._template_specials())
            config = dict(self.config, tokenizer_class=_HF_JSON_CLASSES[kind])
            ids = g.op("HfJsonTokenizer", text, domain=CONTRIB, tokenizer_vocab=self.json_text,
                       tokenizer_config=json.dumps(config))
            ids = g.op("Reshape", ids, g.const(np.array([-1], np.int64)))
            if self.kind == "Unigram":
                # HfJsonTokenizer's Unigram adds no special tokens: the template's, by hand.
                ids = g.op("Concat", g.const(np.array([first], np.int64)), ids,
                           g.const(np.array([last], np.int64)), axis=0)
            return ids, g.op("Mul", ids, g.const(np.int64(0)))
        raise InputError(
            f"edgeport mobile puts WordPiece (BERT's), byte-level BPE and Unigram tokenizers of "
            f"{', '.join(_HF_JSON_CLASSES)} in the graph; this bundle's is a {self.kind} "
            f"{kind or 'tokenizer'}. Note: use model.ort and tokenize in the app.")

    def _wordpiece(self, g: GraphBuilder, text: str) -> tuple[str, str]:
        normalizer = self.tokenizer.get("normalizer") or {}
        pre = self.tokenizer.get("pre_tokenizer") or {}
        if normalizer.get("type") != "BertNormalizer" or pre.get("type") != "BertPreTokenizer":
            raise InputError(
                "edgeport mobile's WordPiece tokenizer is BERT's (BertNormalizer and "
                f"BertPreTokenizer); this bundle's has {normalizer.get('type')} and "
                f"{pre.get('type')}. Note: use model.ort and tokenize in the app.")
        lowercase = bool(normalizer.get("lowercase", True))
        strip = normalizer.get("strip_accents")
        model = self.tokenizer["model"]
        specials = self._template_specials()
        # BertTokenizer numbers its vocabulary by line: the ids must be 0 .. n-1.
        if not isinstance(self.vocab, dict) or sorted(self.vocab.values()) != list(
                range(len(self.vocab))):
            raise BundleError("tokenizer.json's WordPiece vocabulary must number its tokens "
                              "0 .. n-1. Note: export the bundle again.")
        vocab = "\n".join(sorted(self.vocab, key=self.vocab.get))
        ids, types, _, _ = g.op(
            "BertTokenizer", text, outputs=4, domain=CONTRIB, vocab_file=vocab,
            do_lower_case=int(lowercase), strip_accents=int(lowercase if strip is None else strip),
            tokenize_chinese_chars=int(normalizer.get("handle_chinese_chars", True)),
            unk_token=model.get("unk_token", "[UNK]"),
            suffix_indicator=model.get("continuing_subword_prefix", "##"),
            cls_token=specials[0], sep_token=specials[1])
        return ids, types

    def _template_specials(self) -> tuple[str, str]:
        """The special tokens the post-processor puts around one text: (first, last)."""
        post = self.tokenizer.get("post_processor") or {}
        if post.get("type") in ("BertProcessing", "RobertaProcessing"):
            return post["cls"][0], post["sep"][0]
        single = post.get("single") or []
        names = [p["SpecialToken"]["id"] for p in single if "SpecialToken" in p]
        if (post.get("type") != "TemplateProcessing" or len(single) != 3 or len(names) != 2
                or "Sequence" not in single[1]):
            raise InputError(
                "edgeport mobile's tokenizers add one special token before a text and one "
                "after ([CLS] text [SEP], <s> text </s>); this bundle's tokenizer.json adds "
                "others. Note: use model.ort and tokenize in the app.")
        return names[0], names[1]


def _tokenize(g: GraphBuilder, tokenizer: _Tokenizer, length: int,
              names: tuple[str, ...] = ("text",)) -> tuple[str, str, str]:
    """(input_ids, token_type_ids, attention_mask) [N, longest row] of the string inputs
    ``names`` (one text, or a pair: question and context): a Loop over the rows, each truncated
    to ``length`` (its first length-1 tokens and its last, the closing special token) and
    padded to it; then cut to the longest row."""
    body = GraphBuilder("tok/")
    texts = [body.op("Unsqueeze", body.op("Gather", name, "tok/i", axis=0),
                     body.const(np.array([0], np.int64))) for name in names]
    text = texts[0] if len(texts) == 1 else body.op("Concat", *texts, axis=0)
    ids, types = tokenizer.node(body, text)
    n = body.op("Shape", ids)
    m = body.op("Min", n, body.const(np.array([length], np.int64)))
    one = body.const(np.array([1], np.int64))
    positions = body.op("Range", body.const(np.int64(0)), body.op("Squeeze", m),
                        body.const(np.int64(1)))
    index = body.op("Where", body.op("Equal", positions, body.op("Sub", m, one)),
                    body.op("Sub", n, one), positions)
    pads = body.op("Concat", body.const(np.array([0], np.int64)),
                   body.op("Sub", body.const(np.array([length], np.int64)), m), axis=0)
    kept_ids = body.op("Gather", ids, index, axis=0)
    out_ids = body.op("Pad", kept_ids, pads, body.const(np.int64(tokenizer.pad_id)))
    out_types = body.op("Pad", body.op("Gather", types, index, axis=0), pads,
                        body.const(np.int64(0)))
    out_mask = body.op("Pad", body.op("Add", body.op("Mul", kept_ids, body.const(np.int64(0))),
                                      body.const(np.int64(1))), pads, body.const(np.int64(0)))
    cond = body.op("Identity", "tok/cond")
    loop_body = onnx.helper.make_graph(
        body.nodes, "tokenize_one",
        [value("tok/i", INT64, []), value("tok/cond", onnx.TensorProto.BOOL, [])],
        [value(cond, onnx.TensorProto.BOOL, []), value(out_ids, INT64, [length]),
         value(out_types, INT64, [length]), value(out_mask, INT64, [length]),
         value(m, INT64, [1])])
    count = g.op("Squeeze", g.op("Shape", names[0]))
    all_ids, all_types, all_mask, lengths = g.op(
        "Loop", count, "", outputs=4, body=loop_body)
    longest = g.op("ReduceMax", lengths, keepdims=0)
    longest = g.op("Reshape", longest, g.const(np.array([1], np.int64)))

    def cut(x):
        return g.op("Slice", x, g.const(np.array([0], np.int64)), longest,
                    g.const(np.array([1], np.int64)))

    return cut(all_ids), cut(all_types), cut(all_mask)


# --- the pieces every builder shares ----------------------------------------------------------
def _model_and_feeds(bundle: Bundle, variant: str, tokenizer: _Tokenizer, length: int,
                     names: tuple[str, ...] = ("text",)):
    """(the bundle graph, prefixed; pre nodes; feeds; (ids, mask, types))."""
    model = load_graph(bundle.graph_path("model", variant))
    pre = GraphBuilder("pre/")
    ids, types, mask = _tokenize(pre, tokenizer, length, names)
    made = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if any(i.name == "model/position_ids" for i in model.graph.input):
        cumsum = pre.op("CumSum", mask, pre.const(np.int64(1)))
        made["position_ids"] = pre.op("Max", pre.op("Sub", cumsum, pre.const(np.int64(1))),
                                      pre.const(np.int64(0)))
    feeds = {}
    for graph_input in model.graph.input:
        name = graph_input.name.removeprefix("model/")
        if name in made:
            elem = graph_input.type.tensor_type.elem_type
            feeds[name] = made[name] if elem == INT64 else pre.op("Cast", made[name], to=elem)
    return model, pre, feeds, (ids, mask, types)


def _max_length(bundle: Bundle, tokenizer: _Tokenizer, pooling: SentencePooling | None) -> int:
    """The runtime's truncation length: max_seq_length for sentence-transformers, else the
    tokenizer's model_max_length, else the config's position embeddings."""
    if pooling is not None and pooling.max_seq_length:
        return pooling.max_seq_length
    if tokenizer.runtime.model_max_length:
        return tokenizer.runtime.model_max_length
    length = config_count(bundle.config, "max_position_embeddings")
    if length is None:
        raise BundleError("The bundle names no maximum length (tokenizer_config.json's "
                          "model_max_length, config.json's max_position_embeddings). Note: "
                          "export the checkpoint again.")
    return length


def _float_output(model: onnx.ModelProto, post: GraphBuilder, index: int = 0,
                  name: str | None = None) -> str:
    outputs = model.graph.output
    if name is not None:
        found = [o for o in outputs if o.name == "model/" + name]
        if not found:
            raise BundleError(f"The bundle's graph has no output {name!r}; it gives "
                              f"{[o.name.removeprefix('model/') for o in outputs]}. Note: "
                              "export the checkpoint again.")
        out = found[0]
    else:
        out = outputs[index]
    if out.type.tensor_type.elem_type == FLOAT:
        return out.name
    return post.op("Cast", out.name, to=FLOAT)  # float16 variants: scores in float32


def _write(bundle, model, pre, post, feeds, outputs: dict, metadata: dict, target: Path,
           notes: list[str], exact: bool, inputs: dict | None = None) -> dict:
    """Join, save, and the report's record."""
    if any(node.op_type in _PER_BATCH_OPS for node in model.graph.node):
        notes = [*notes, "This variant quantizes activations dynamically, with one scale per "
                 "call: a batch of texts gives slightly different results than one text at a "
                 "time (as the runtime does with batch_size > 1). Pass one text per call for "
                 "the pipeline's results."]
    described = {name: desc for name, (_, _, desc) in outputs.items()}
    out_values = []
    for name, (source, shape, _) in outputs.items():
        post.op("Identity", source, outputs=[name])
        elem = INT64 if name in _INT_OUTPUTS else FLOAT
        out_values.append(value(name, elem, shape))
    inputs = inputs or _TEXT_INPUT
    meta = {"edgeport.task": bundle.task, "edgeport.inputs": metadata_json(inputs),
            "edgeport.outputs": metadata_json(described), **metadata}
    if notes:
        meta["edgeport.notes"] = metadata_json(notes)
    joined = join(model, pre, post, inputs=[value(name, STRING, ["N"]) for name in inputs],
                  outputs=out_values,
                  feeds=feeds, metadata=meta, name=f"edgeport_e2e_{bundle.task}")
    save(joined, target)
    return {"inputs": inputs, "outputs": described, "exact": exact, "notes": notes}


def _labels(bundle: Bundle) -> list[str]:
    id2label = config_id2label(bundle.config) or default_labels(bundle.config)
    return [id2label[i] for i in sorted(id2label)]


# --- builders ---------------------------------------------------------------------------------
def build_text_classification(bundle: Bundle, variant: str, target: Path) -> dict:
    """``scores`` [N, labels]: softmax or sigmoid of the logits as the pipeline applies by
    default; label names in the metadata ``labels``."""
    tokenizer = _Tokenizer(bundle)
    length = _max_length(bundle, tokenizer, None)
    model, pre, feeds, _ = _model_and_feeds(bundle, variant, tokenizer, length)
    post = GraphBuilder("post/")
    logits = _float_output(model, post, name="logits")
    labels = _labels(bundle)
    problem = bundle.config.get("problem_type")
    if problem == "regression":
        function, scores = "none", logits
    elif problem == "multi_label_classification" or len(labels) == 1:
        function, scores = "sigmoid", post.op("Sigmoid", logits)
    else:
        function, scores = "softmax", post.op("Softmax", logits, axis=-1)
    notes = [f"Texts longer than {length} tokens are truncated to {length} (the runtime raises "
             "for them unless called with truncation=True, which gives these scores).",
             "Text pairs are not taken: one text per row."]
    outputs = {"scores": (scores, ["N", len(labels)],
                          f"float32 [N, {len(labels)}]: the {function} of the logits, one row "
                          "per text, columns in the order of the metadata's labels")}
    return _write(bundle, model, pre, post, feeds, outputs,
                  {"labels": metadata_json(labels), "edgeport.function": function}, target,
                  notes, exact=True)


def _pool(post: GraphBuilder, hidden: str, mask: str, modes, normalize: bool) -> str:
    """sentence-transformers pooling (runtime.text.pooling.SentencePooling) in the graph."""
    maskf = post.op("Unsqueeze", post.op("Cast", mask, to=FLOAT),
                    post.const(np.array([-1], np.int64)))
    axis1 = post.const(np.array([1], np.int64))
    summed = post.op("ReduceSum", post.op("Mul", hidden, maskf), axis1, keepdims=0)
    counts = post.op("Max", post.op("ReduceSum", maskf, axis1, keepdims=0),
                     post.const(np.float32(1e-9)))
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(post.op("Gather", hidden, post.const(np.int64(0)), axis=1))
        elif mode == "max":
            masked = post.op("Where", post.op("Greater", maskf, post.const(np.float32(0))),
                             hidden, post.const(np.float32(-1e9)))
            parts.append(post.op("ReduceMax", masked, axis1, keepdims=0))
        elif mode == "mean":
            parts.append(post.op("Div", summed, counts))
        elif mode == "mean_sqrt_len":
            parts.append(post.op("Div", summed, post.op("Sqrt", counts)))
        elif mode == "weightedmean":
            # position weights 1..S on the kept tokens
            ones = post.op("Cast", post.op("Greater", maskf, post.const(np.float32(-1))),
                           to=FLOAT)
            weights = post.op("Mul", post.op("CumSum", ones, post.const(np.int64(1))), maskf)
            total = post.op("Max", post.op("ReduceSum", weights, axis1, keepdims=0),
                            post.const(np.float32(1e-9)))
            parts.append(post.op("Div", post.op("ReduceSum", post.op("Mul", hidden, weights),
                                                axis1, keepdims=0), total))
        else:  # lasttoken: right padding, so the row's length - 1
            last = post.op("Sub", post.op("ReduceSum", mask, axis1, keepdims=1),
                           post.const(np.int64(1)))
            last = post.op("Max", last, post.const(np.int64(0)))
            index = post.op("Unsqueeze", last, post.const(np.array([-1], np.int64)))
            shape = post.op("Shape", hidden)
            width = post.op("Slice", shape, post.const(np.array([2], np.int64)),
                            post.const(np.array([3], np.int64)))
            target_shape = post.op("Concat", post.op("Slice", shape, post.const(
                np.array([0], np.int64)), post.const(np.array([1], np.int64))),
                post.const(np.array([1], np.int64)), width, axis=0)
            index = post.op("Expand", index, target_shape)
            parts.append(post.op("Squeeze", post.op("GatherElements", hidden, index, axis=1),
                                 axis1))
    pooled = parts[0] if len(parts) == 1 else post.op("Concat", *parts, axis=-1)
    if normalize:
        norms = post.op("ReduceL2", pooled, post.const(np.array([-1], np.int64)), keepdims=1)
        pooled = post.op("Div", pooled, post.op("Max", norms, post.const(np.float32(1e-12))))
    return pooled


def build_feature_extraction(bundle: Bundle, variant: str, target: Path) -> dict:
    """A sentence-transformers bundle: ``embeddings`` [N, D], pooled (and normalized) as its
    modules.json says. A plain one: ``last_hidden_state`` [N, S, H] with ``attention_mask``."""
    pooling = SentencePooling.from_dir(bundle.path)
    tokenizer = _Tokenizer(bundle)
    length = _max_length(bundle, tokenizer, pooling)
    model, pre, feeds, (ids, mask, _) = _model_and_feeds(bundle, variant, tokenizer,
                                                        length)
    post = GraphBuilder("post/")
    hidden = _float_output(model, post, index=0)
    if pooling is None:
        outputs = {
            "last_hidden_state": (hidden, ["N", "S", "H"],
                                  "float32 [N, S, H]: each token's embedding; rows padded to "
                                  "the longest text"),
            "attention_mask": (mask, ["N", "S"], "int64 [N, S]: 1 on a text's tokens, 0 on "
                               "padding (row i's tokens are what the pipeline gives for text "
                               "i)"),
        }
        notes = [f"Texts longer than {length} tokens are truncated to {length} (the runtime "
                 "raises unless called with truncation=True)."]
        metadata = {}
    else:
        embeddings = _pool(post, hidden, mask, pooling.modes, pooling.normalize)
        outputs = {"embeddings": (embeddings, ["N", "D"],
                                  f"float32 [N, D]: sentence embeddings, {'+'.join(pooling.modes)}"
                                  f" pooling{', L2-normalized' if pooling.normalize else ''}")}
        notes = [f"Texts are truncated to {length} tokens, as sentence-transformers does."]
        metadata = {"edgeport.pooling": metadata_json(list(pooling.modes)),
                    "edgeport.normalize": metadata_json(pooling.normalize)}
    return _write(bundle, model, pre, post, feeds, outputs, metadata, target, notes,
                  exact=True)


def build_token_classification(bundle: Bundle, variant: str, target: Path) -> dict:
    """``scores`` [N, S, labels] (softmax per token) with ``input_ids`` and ``attention_mask``;
    entities and word grouping are the app's step."""
    tokenizer = _Tokenizer(bundle)
    length = _max_length(bundle, tokenizer, None)
    model, pre, feeds, (ids, mask, _) = _model_and_feeds(bundle, variant, tokenizer,
                                                        length)
    post = GraphBuilder("post/")
    scores = post.op("Softmax", _float_output(model, post, name="logits"), axis=-1)
    labels = _labels(bundle)
    special = sorted({tokenizer.pad_id, *(
        int(t["id"]) for t in tokenizer.tokenizer.get("added_tokens") or [] if t.get("special"))})
    outputs = {
        "scores": (scores, ["N", "S", len(labels)],
                   f"float32 [N, S, {len(labels)}]: each token's softmax over the labels of the "
                   "metadata's labels"),
        "input_ids": (ids, ["N", "S"], "int64 [N, S]: the token ids (special tokens included), "
                      "to skip the metadata's special_ids and map tokens to words"),
        "attention_mask": (mask, ["N", "S"], "int64 [N, S]: 1 on a text's tokens, 0 on padding"),
    }
    notes = ["The graph gives every token's label scores, as the pipeline's "
             "aggregation_strategy='none' computes them; the app drops special tokens and "
             "groups tokens into entities (aggregation) itself.",
             "Character offsets are not given: onnxruntime-extensions' BertTokenizer offsets "
             "differ from the tokenizers library's after punctuation; map tokens to text in "
             "the app.",
             f"Texts longer than {length} tokens are truncated (the pipeline's stride windows "
             "are not made)."]
    return _write(bundle, model, pre, post, feeds, outputs,
                  {"labels": metadata_json(labels), "special_ids": metadata_json(special)},
                  target, notes, exact=False)


def build_question_answering(bundle: Bundle, variant: str, target: Path) -> dict:
    """Takes ``question`` and ``context`` [N]; gives ``start_logits`` and ``end_logits`` [N, S]
    with the tokens (``input_ids``, ``token_type_ids``: 1 on the context's tokens) and
    ``attention_mask``; the best span and its text are the app's step."""
    tokenizer = _Tokenizer(bundle)
    if tokenizer.kind != "WordPiece":
        raise InputError(
            "edgeport mobile's question-answering graph tokenizes question and context with "
            f"BERT's WordPiece; this bundle's tokenizer is {tokenizer.kind}. Note: use model.ort "
            "and tokenize in the app.")
    length = min(_max_length(bundle, tokenizer, None), 384)  # the pipeline's max_seq_len
    names = ("question", "context")
    model, pre, feeds, (ids, mask, types) = _model_and_feeds(bundle, variant, tokenizer,
                                                            length, names)
    post = GraphBuilder("post/")
    outputs = {
        "start_logits": (_float_output(model, post, name="start_logits"), ["N", "S"],
                         "float32 [N, S]: each token's score as the answer's first token"),
        "end_logits": (_float_output(model, post, name="end_logits"), ["N", "S"],
                       "float32 [N, S]: each token's score as the answer's last token"),
        "input_ids": (ids, ["N", "S"], "int64 [N, S]: [CLS] question [SEP] context [SEP]"),
        "token_type_ids": (types, ["N", "S"], "int64 [N, S]: 1 on the context's tokens (and "
                           "its [SEP]), 0 on the question's"),
        "attention_mask": (mask, ["N", "S"], "int64 [N, S]: 1 on tokens, 0 on padding"),
    }
    notes = ["The app picks the answer as the pipeline does: the span of context tokens "
             "(token_type_ids 1, not the last [SEP]) of at most 15 tokens maximizing "
             "softmax(start) * softmax(end) over the context tokens, and maps it to text.",
             "Character offsets are not given: onnxruntime-extensions' BertTokenizer offsets "
             "differ from the tokenizers library's after punctuation.",
             f"A question and context over {length} tokens are cut to {length} (the context's "
             "end); the pipeline reads long contexts in overlapping windows instead."]
    inputs = {"question": "string [N]: the questions, UTF-8",
              "context": "string [N]: the context of each question (as many as questions), "
                         "UTF-8"}
    return _write(bundle, model, pre, post, feeds, outputs, {}, target, notes, exact=False,
                  inputs=inputs)


BUILDERS: dict = {
    "text-classification": build_text_classification,
    "feature-extraction": build_feature_extraction,
    "token-classification": build_token_classification,
    "question-answering": build_question_answering,
}
