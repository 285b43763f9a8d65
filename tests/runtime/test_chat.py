"""Chat input for text-generation: the runtime renders the bundle's chat template as
transformers' apply_chat_template does and gives what transformers' pipeline gives for the same
chats on the same tiny LLM checkpoints, token for token; the template is untrusted (sandbox,
size and rendering limits, clear errors), and so are the messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from compare import assert_same
from generation_checkpoints import CHAT_TEMPLATES

from runtime import pipeline
from runtime.errors import BundleError, InputError
from runtime.text.chat import (
    MAX_RENDERED_CHARS,
    MAX_TEMPLATE_CHARS,
    ChatTemplate,
    template_special_tokens,
)
from runtime.text.tokenizer import TextTokenizer

transformers = pytest.importorskip("transformers")

TASK = "text-generation"
# model_type -> its tokenizer's chat template style (tests/support/generation_checkpoints.py)
CHAT_MODELS = {"llama": "llama3", "qwen2": "chatml", "gemma2": "gemma", "phi3": "phi3",
               "mistral": "mistral"}
GREEDY = {"do_sample": False, "max_new_tokens": 8}
SYSTEM = [{"role": "system", "content": "You are a helpful cat."},
          {"role": "user", "content": "How is the weather today?"}]
MULTI_TURN = [{"role": "user", "content": "Hello there"},
              {"role": "assistant", "content": "Hello! How can I help?"},
              {"role": "user", "content": "Tell me about the sea, café and crème brûlée"}]
PREFILL = [{"role": "user", "content": "Write about the quick brown fox"},
           {"role": "assistant", "content": "The fox jumps "}]  # ends with a space: trimmed
CASES = [{}, {"return_full_text": False}, {"return_tensors": True}]


def outcome(function, *args, **kwargs):
    """What a call gives, or the error it raised (transformers' TemplateError carries the
    template's raise_exception message; the runtime's InputError quotes it)."""
    try:
        return function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the test compares failures too
        return error


def assert_same_outcome(actual, expected, where):
    if isinstance(expected, Exception):
        assert isinstance(actual, InputError), f"{where}: {actual!r} instead of {expected!r}"
        assert str(expected) in str(actual), f"{where}: {actual} does not say {expected}"
    else:
        assert not isinstance(actual, Exception), f"{where}: {actual!r}"
        assert_same(actual, expected, where)


@pytest.mark.parametrize("model_type", sorted(CHAT_MODELS))
def test_chats_match_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    for chat in (SYSTEM, MULTI_TURN, PREFILL):
        for case in CASES:
            kwargs = {**GREEDY, **case}
            assert_same_outcome(outcome(runtime, chat, **kwargs),
                                outcome(reference, chat, **kwargs),
                                f"{model_type} {chat[-1]['content']!r} {case}")
    for kwargs in ({"continue_final_message": False}, {"continue_final_message": True}):
        for chat in (PREFILL, MULTI_TURN):  # a new assistant turn, or the user's continued
            assert_same(runtime(chat, **GREEDY, **kwargs), reference(chat, **GREEDY, **kwargs),
                        f"{model_type} {kwargs}")
    chats = [MULTI_TURN, PREFILL]
    assert_same(runtime(chats, **GREEDY), reference(chats, **GREEDY), f"{model_type} batch")
    assert runtime(chats, batch_size=2, **GREEDY) == [runtime(chat, **GREEDY) for chat in chats]


def test_gemma_refuses_a_system_message_as_transformers_does(runtime_pipeline,
                                                             reference_pipeline):
    with pytest.raises(Exception) as expected:
        reference_pipeline("gemma2", TASK)(SYSTEM, **GREEDY)
    assert str(expected.value) == "System role not supported"
    with pytest.raises(InputError, match="chat_template.jinja refuses these messages: System "
                                         "role not supported. Note:"):
        runtime_pipeline("gemma2", TASK)(SYSTEM, **GREEDY)


def test_tokenizer_arguments_apply_to_chats_as_in_transformers(runtime_pipeline,
                                                               reference_pipeline):
    runtime, reference = runtime_pipeline("llama", TASK), reference_pipeline("llama", TASK)
    # add_special_tokens is ignored for chats: the template renders <|begin_of_text|> itself
    for kwargs in ({"add_special_tokens": True},
                   {"tokenizer_encode_kwargs": {"truncation": True, "max_length": 12}},
                   {"return_tensors": True,
                    "tokenizer_encode_kwargs": {"add_special_tokens": True}}):
        assert_same(runtime(MULTI_TURN, **GREEDY, **kwargs),
                    reference(MULTI_TURN, **GREEDY, **kwargs), str(kwargs))


def test_chats_stream(runtime_pipeline):
    generate = runtime_pipeline("qwen2", TASK)
    reply = generate(MULTI_TURN, return_full_text=False, **GREEDY)[0]["generated_text"]
    pieces = []
    full = generate(MULTI_TURN, streamer=pieces.append, **GREEDY)
    assert full[0]["generated_text"][-1] == {"role": "assistant", "content": reply}
    assert "".join(pieces) == reply
    assert "".join(generate.stream(MULTI_TURN, **GREEDY)) == reply
    assert "".join(generate.stream(PREFILL, **GREEDY)) == generate(
        PREFILL, return_full_text=False, **GREEDY)[0]["generated_text"]
    with pytest.raises(InputError, match="one prompt"):
        generate([MULTI_TURN, PREFILL], streamer=print, **GREEDY)


def test_a_bundle_without_a_chat_template_says_so(runtime_pipeline):
    generate = runtime_pipeline("gpt2", TASK)
    with pytest.raises(InputError, match="has no chat_template.*pass a plain text prompt"):
        generate(MULTI_TURN, **GREEDY)
    assert generate("Hello", **GREEDY)[0]["generated_text"].startswith("Hello")


@pytest.mark.parametrize(("inputs", "message"), [
    ({"role": "user", "content": "Hi"}, "one message"),
    ([{"role": "user"}], "message 1 has no 'content' key"),
    ([{"content": "Hi"}], "message 1 has no 'role' key"),
    ([{"role": 1, "content": "Hi"}], "role of type int"),
    ([{"role": "user", "content": 5}], "content of type int"),
    ([{"role": "user", "content": None}], "content of type NoneType"),
    ([{"role": "user", "content": "Hi"}, "and more"], "message 2 is a str"),
    ([{"role": "user", "content": [{"type": "image", "url": "cat.png"}]}], "text only"),
    ([{"role": "user", "content": [{"type": "text"}]}], "no string 'text'"),
    ([[]], "Chat 1 has no messages"),
    ([[{"role": "user", "content": "Hi"}], "Hi"], "Chat 2 is a str"),
    (["Hi", [{"role": "user", "content": "Hi"}]], "mix texts with chats"),
    ([], "empty list"),
])
def test_bad_messages_are_clear_errors(inputs, message, runtime_pipeline):
    with pytest.raises(InputError, match=message):
        runtime_pipeline("llama", TASK)(inputs, **GREEDY)


def test_bad_chat_arguments_are_clear_errors(runtime_pipeline):
    generate = runtime_pipeline("llama", TASK)
    with pytest.raises(InputError, match="continue_final_message must be"):
        generate(MULTI_TURN, continue_final_message="yes", **GREEDY)
    with pytest.raises(InputError, match="which the pipeline sets itself"):
        generate(MULTI_TURN, tokenizer_encode_kwargs={"add_generation_prompt": False}, **GREEDY)
    with pytest.raises(InputError, match="for text prompts"):
        generate("Hi", tokenizer_encode_kwargs={"enable_thinking": False}, **GREEDY)
    with pytest.raises(InputError, match="JSON schema"):
        generate(MULTI_TURN, tokenizer_encode_kwargs={"tools": [print]}, **GREEDY)
    with pytest.raises(InputError, match="one prompt"):
        list(generate.stream([MULTI_TURN], **GREEDY))
    # the template's own check of what it is given: the final message is not in the prompt
    with pytest.raises(InputError, match="final message does not appear"):
        generate(MULTI_TURN, continue_final_message=True, tokenizer_encode_kwargs={
            "chat_template": "{% for m in messages[:-1] %}{{ m.content }}{% endfor %}"},
            **GREEDY)


# --- bundles whose template is hostile, broken or elsewhere --------------------------------------
@pytest.fixture
def llama_copy(tiny_bundle, tmp_path):
    """A copy of the llama bundle, and a function that gives it a chat template file."""
    bundle = shutil.copytree(tiny_bundle("llama", TASK), tmp_path / "bundle")

    def with_template(text: str):
        (bundle / "chat_template.jinja").write_text(text, encoding="utf-8")
        return pipeline(TASK, model=bundle)

    return bundle, with_template


ESCAPES = [
    "{{ messages.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ raise_exception.__globals__ }}",
    "{% for m in messages %}{{ m.update({'role': 'x'}) }}{% endfor %}",
    "{{ 'ab' * 10**9 }}",
    "{{ 7 ** 1000000000 }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s }}",
    "{% macro grow(s) %}{{ grow(s ~ s) }}{% endmacro %}{{ grow('ab') }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_a_hostile_template_is_stopped_by_the_sandbox(template, llama_copy):
    _, with_template = llama_copy
    with pytest.raises(BundleError, match="chat_template.jinja did something the sandbox "
                                          "forbids"):
        with_template(template)(MULTI_TURN, **GREEDY)


def test_a_broken_or_huge_template_is_a_clear_error(llama_copy):
    bundle, with_template = llama_copy
    with pytest.raises(BundleError, match="chat_template.jinja is not a valid Jinja template"):
        with_template("{% for m in messages %}{{ m.content }")(MULTI_TURN, **GREEDY)
    with pytest.raises(InputError, match="chat_template.jinja failed on these messages: "
                                         "TypeError"):
        with_template("{{ messages[0].content + 1 }}")(MULTI_TURN, **GREEDY)
    with pytest.raises(InputError, match=f"over {MAX_RENDERED_CHARS:,} characters"):
        with_template("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}")(
            MULTI_TURN, **GREEDY)
    with pytest.raises(BundleError, match="over the limit of 1,048,576"):
        with_template("{{ 'x' }}" + " " * MAX_TEMPLATE_CHARS)(MULTI_TURN, **GREEDY)
    (bundle / "chat_template.jinja").unlink()
    config = json.loads((bundle / "tokenizer_config.json").read_text())
    config["chat_template"] = {"default": 42}
    (bundle / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="tokenizer_config.json's chat_template is"):
        pipeline(TASK, model=bundle)(MULTI_TURN, **GREEDY)
    # texts never read the template
    assert pipeline(TASK, model=bundle)("Hello", **GREEDY)[0]["generated_text"]


DEFAULT = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}"
           "<|end_header_id|>{{ m.content }}<|eot_id|>{% endfor %}"
           "{% if enable_thinking is defined and not enable_thinking %}<think></think>"
           "{% endif %}{% if add_generation_prompt %}<|start_header_id|>assistant"
           "<|end_header_id|>{% endif %}")
TOOL_USE = ("{{ bos_token }}Tools: {{ tools | tojson }}{% for m in messages %}{{ m.role }}: "
            "{{ m.content }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}assistant:"
            "{% endif %}")
TOOLS = [{"type": "function", "function": {"name": "météo", "description": "the weather"}}]


@pytest.fixture(scope="module")
def named_templates(tiny_checkpoint, tiny_bundle, tmp_path_factory):
    """A llama checkpoint whose tokenizer_config.json holds a list of templates ("default" and
    "tool_use"), as older transformers saved them, and bundles with them: a copy of the llama
    bundle given that tokenizer_config.json (an export with older transformers), that checkpoint
    exported, and the same checkpoint saved by transformers 4.57 (chat_template.jinja and
    additional_chat_templates/tool_use.jinja) and exported."""
    from exporter import bundle_from_checkpoint

    root = tmp_path_factory.mktemp("named-templates")
    legacy = shutil.copytree(tiny_checkpoint("llama", TASK), root / "legacy")
    (legacy / "chat_template.jinja").unlink()
    config = json.loads((legacy / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "default", "template": DEFAULT},
                               {"name": "tool_use", "template": TOOL_USE}]
    (legacy / "tokenizer_config.json").write_text(json.dumps(config))
    current = shutil.copytree(legacy, root / "current")
    transformers.AutoTokenizer.from_pretrained(legacy).save_pretrained(current)
    assert "chat_template" not in json.loads((current / "tokenizer_config.json").read_text())
    assert (current / "additional_chat_templates" / "tool_use.jinja").read_text() == TOOL_USE
    in_config = shutil.copytree(tiny_bundle("llama", TASK), root / "in-config")
    (in_config / "chat_template.jinja").unlink()
    shutil.copy(legacy / "tokenizer_config.json", in_config / "tokenizer_config.json")
    bundles = [in_config, *(bundle_from_checkpoint(checkpoint, root / f"{checkpoint.name}-bundle",
                                                   task=TASK) for checkpoint in (legacy, current))]
    return legacy, bundles


def test_named_templates_are_picked_as_in_transformers(named_templates):
    checkpoint, bundles = named_templates
    for exported in bundles[1:]:  # the export writes them as transformers 4.57 does
        assert (exported / "chat_template.jinja").read_text() == DEFAULT
        assert (exported / "additional_chat_templates" / "tool_use.jinja").read_text() == TOOL_USE
    reference = transformers.pipeline(TASK, model=str(checkpoint), device="cpu")
    cases = [{}, {"tokenizer_encode_kwargs": {"enable_thinking": False}},
             {"tokenizer_encode_kwargs": {"tools": TOOLS}},
             {"tokenizer_encode_kwargs": {"chat_template": "tool_use", "tools": None}}]
    chat = MULTI_TURN[:1]  # the tools' JSON is long in 128 positions
    for bundle in bundles:
        runtime = pipeline(TASK, model=bundle)
        for kwargs in cases:
            assert_same(runtime(chat, **GREEDY, **kwargs), reference(chat, **GREEDY, **kwargs),
                        f"{bundle.name} {kwargs}")


def test_several_templates_without_a_default_is_a_clear_error(llama_copy):
    bundle, _ = llama_copy
    (bundle / "chat_template.jinja").unlink()
    (bundle / "additional_chat_templates").mkdir()
    (bundle / "additional_chat_templates" / "rag.jinja").write_text("{{ documents }}")
    generate = pipeline(TASK, model=bundle)
    with pytest.raises(InputError, match=r"several chat templates \(\['rag'\]\).*'chat_template'"):
        generate(MULTI_TURN, **GREEDY)
    documents = [{"title": "Sea", "text": "The sea is blue."}]
    assert generate(MULTI_TURN, return_full_text=False, **GREEDY, tokenizer_encode_kwargs={
        "chat_template": "rag", "documents": documents})[0]["generated_text"]


# --- rendering alone, against apply_chat_template ------------------------------------------
# Beside the checkpoints' own templates: what transformers' Jinja setup adds (tojson keeping
# non-ASCII, loopcontrols, {% generation %}, namespace, strftime_now, special tokens that are not
# set), tools and documents, extra variables, text blocks.
EXTRA_TEMPLATES = {
    "tojson": "{{ messages | tojson }}{{ tools | tojson(indent=2) }}{{ documents | tojson }}",
    "loopcontrols": "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
                    "{{ m.content }}{% if loop.index > 2 %}{% break %}{% endif %}{% endfor %}",
    "generation": "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}"
                  "{{ m.content }}{% endgeneration %}{% else %}{{ m.role }}: {{ m.content }}\n"
                  "{% endif %}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
    "namespace": "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + "
                 "m.content | length %}{% endfor %}{{ ns.n }} {{ strftime_now('%Y') | length }}",
    "tokens": "[{{ bos_token }}|{{ eos_token }}|{{ unk_token }}|{{ pad_token }}|{{ sep_token }}"
              "|{{ mask_token is defined }}|{{ additional_special_tokens }}|{{ custom }}]",
    "blocks": "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% else %}"
              "{% for b in m.content %}<{{ b.type }}>{{ b.text }}{% endfor %}{% endif %}"
              "{% endfor %}",
    "whitespace": "  {% for m in messages %}\n    {{- m.role }}\n  {% endfor %}\n{{ 'end' }}  ",
}
BLOCKS = [{"role": "user", "content": [{"type": "text", "text": "Look "},
                                       {"type": "text", "text": "here"}]},
          {"role": "assistant", "content": [{"type": "text", "text": "I see "}]}]


@pytest.mark.parametrize("model_type", sorted(CHAT_MODELS) + ["gpt2"])
def test_rendering_matches_apply_chat_template(model_type, tiny_checkpoint, tiny_bundle):
    checkpoint, bundle = tiny_checkpoint(model_type, TASK), tiny_bundle(model_type, TASK)
    hf = transformers.AutoTokenizer.from_pretrained(checkpoint)
    tokenizer = TextTokenizer.from_dir(bundle)
    assert template_special_tokens(tokenizer) == hf.special_tokens_map
    templates = {**EXTRA_TEMPLATES, **CHAT_TEMPLATES}
    chat = ChatTemplate.from_dir(bundle, tokenizer)
    assert bool(chat) == (model_type != "gpt2")
    if chat:
        assert chat.templates["default"] == CHAT_TEMPLATES[CHAT_MODELS[model_type]]
    for name, template in templates.items():
        own = ChatTemplate(template, special_tokens=template_special_tokens(tokenizer))
        for messages in (SYSTEM[1:], MULTI_TURN, PREFILL, BLOCKS):
            for flags in ({"add_generation_prompt": True}, {"add_generation_prompt": False},
                          {"continue_final_message": True}):
                for extra in ({}, {"tools": TOOLS, "documents": [{"title": "é", "text": "x"}],
                                   "custom": "ü"}):
                    where = f"{model_type} {name} {messages[-1]['content']!r} {flags} {extra}"
                    expected = outcome(hf.apply_chat_template, messages, chat_template=template,
                                       tokenize=False, **flags, **extra)
                    actual = outcome(own.render, [messages], **flags, **extra)
                    if isinstance(expected, Exception):  # the same failure, told clearly
                        assert isinstance(actual, InputError), f"{where}: {actual!r}"
                    else:
                        assert actual == [expected], where


def test_every_special_token_reaches_the_template(tiny_checkpoint, tmp_path):
    """additional_special_tokens (a list) and a model's extra_special_tokens too."""
    hf = transformers.AutoTokenizer.from_pretrained(
        tiny_checkpoint("llama", TASK), additional_special_tokens=["<|eot_id|>"],
        extra_special_tokens={"image_token": "<|end_of_text|>"}, unk_token="<|end_of_text|>")
    hf.save_pretrained(tmp_path)
    saved = transformers.AutoTokenizer.from_pretrained(tmp_path)
    tokenizer = TextTokenizer.from_dir(tmp_path)
    assert template_special_tokens(tokenizer) == saved.special_tokens_map == hf.special_tokens_map
    template = EXTRA_TEMPLATES["tokens"] + "{{ image_token }}"
    assert ChatTemplate.from_dir(tmp_path, tokenizer).render(
        [MULTI_TURN], chat_template=template, custom=1)[0] == saved.apply_chat_template(
        MULTI_TURN, chat_template=template, custom=1, tokenize=False)


def test_the_chat_path_runs_where_torch_cannot_be_imported(tiny_bundle):
    code = textwrap.dedent("""
        import json, sys
        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers", "optimum"):
                    raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
        sys.meta_path.insert(0, Blocker())
        from runtime import pipeline
        chat = pipeline("text-generation", model=sys.argv[1])
        out = chat([{"role": "user", "content": "Hi"}], do_sample=False, max_new_tokens=3)
        print(json.dumps([out[0]["generated_text"][-1]["role"],
                          [m for m in ("torch", "transformers") if m in sys.modules]]))
    """)
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_bundle("qwen2", TASK))],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["assistant", []]
