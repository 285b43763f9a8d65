"""Chat templates: a list of messages made into the prompt text of a chat model, as
transformers' ``apply_chat_template(..., tokenize=False)`` makes it.

The template is the tokenizer's own Jinja template, from the bundle: ``chat_template.jinja``
(and named ones in ``additional_chat_templates/*.jinja``), which transformers' save_pretrained
writes beside tokenizer_config.json (4.57 does), or else tokenizer_config.json's
``"chat_template"`` (a string, or a list of ``{"name", "template"}`` objects), as older
versions wrote it. It is rendered with transformers' Jinja setup: an
``ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`` with ``loopcontrols``,
the ``{% generation %}`` block of assistant-mask templates, ``raise_exception``,
``strftime_now`` and a ``tojson`` that keeps non-ASCII text; its variables are ``messages``,
``tools``, ``documents``, ``add_generation_prompt`` and the tokenizer's special tokens
(``bos_token``, ``eos_token``, ...).

A template comes with a bundle, from someone else, so it is untrusted code:

- the sandbox refuses attributes such as ``__class__`` at once (jinja2 would render an unsafe
  attribute that is only printed as an empty string), ``*``, ``**`` and ``+`` that would make a
  string or number of absurd size, and strings or lists over ``MAX_RENDERED_CHARS`` kept in a
  ``namespace()`` or passed to a call (where a loop or a recursing macro could double them);
- a template file over ``MAX_TEMPLATE_CHARS``, and a rendering over ``MAX_RENDERED_CHARS``, are
  refused;
- every failure is an EdgeportError that names where the template came from: a template that
  does not parse or breaks the sandbox is a BundleError; ``raise_exception("...")`` (the
  template refusing the messages, such as Gemma's "System role not supported") and any other
  failure while rendering are an InputError carrying the template's words.

Not bounded: the CPU time of a template that loops without writing (jinja2's ``range`` is capped
at 100,000 items, but loops nest), and the size of one string that a single filter makes from
numbers the template spells out (``'x' | center(10**9)``).

May import ``runtime.errors``, ``runtime.files`` and jinja2.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import BundleError, EdgeportError, InputError
from ..files import inside, read_text_file

# The largest chat templates on the Hub (tool-calling ones) are tens of kB: a template file over
# this many bytes, or a template string over this many characters, is refused.
MAX_TEMPLATE_CHARS = 2**20
MAX_TEMPLATES = 64  # named templates in additional_chat_templates/
# Far beyond any model's context (about 4 characters a token), far below a memory blowup.
MAX_RENDERED_CHARS = 8_000_000
# transformers' marker for continue_final_message: appended to the last message, found in the
# rendering, and everything from it on cut off.
CONTINUE_FINAL_MESSAGE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "
TEMPLATE_FILE = "chat_template.jinja"
TEMPLATE_DIR = "additional_chat_templates"
# apply_chat_template's own arguments: not template variables.
RESERVED = frozenset({"messages", "conversation", "tools", "documents", "chat_template",
                      "add_generation_prompt", "continue_final_message"})
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                 "mask_token")
_CHAT_SHAPE = 'a chat is a list of messages like [{"role": "user", "content": "Hello"}]'
_NO_TEMPLATE = (
    "This bundle's tokenizer has no chat_template, so it cannot turn messages into a prompt. "
    "Note: pass a plain text prompt, or export a checkpoint whose tokenizer has a chat template "
    "(chat_template.jinja, or \"chat_template\" in tokenizer_config.json)."
)


class _Refusal(Exception):
    """raise_exception() called by a template: it refuses the messages it was given."""


# --- messages ---------------------------------------------------------------------------------
def check_chat(messages: Any, where: str = "The chat") -> list:
    """``messages`` if it is a chat: a non-empty list of dicts, each with a str ``role`` and a
    str ``content`` (or a list of ``{"type": "text", "text": ...}`` blocks); other keys
    (``tool_calls``, ``name``, ...) go to the template as they are. An InputError otherwise.

    >>> check_chat([{"role": "user", "content": "Hi"}])
    [{'role': 'user', 'content': 'Hi'}]
    """
    if isinstance(messages, Mapping):
        raise InputError(f"{where} is one message (a dict), not a list of them. Note: "
                         f"{_CHAT_SHAPE}; wrap the message in a list.")
    if not isinstance(messages, (list, tuple)):
        raise InputError(f"{where} is a {type(messages).__name__}, not a list of messages. "
                         f"Note: {_CHAT_SHAPE}.")
    if not messages:
        raise InputError(f"{where} has no messages. Note: {_CHAT_SHAPE}.")
    for number, message in enumerate(messages, 1):
        place = f"{where}'s message {number}"
        if not isinstance(message, Mapping):
            raise InputError(f"{place} is a {type(message).__name__} ({message!r:.60}), not a "
                             f"dict. Note: {_CHAT_SHAPE}.")
        missing = [key for key in ("role", "content") if key not in message]
        if missing:
            raise InputError(f"{place} has no {' or '.join(map(repr, missing))} key (it has "
                             f"{sorted(map(str, message))[:8]}). Note: {_CHAT_SHAPE}.")
        if not isinstance(message["role"], str):
            raise InputError(f"{place} has a role of type {type(message['role']).__name__}: "
                             f"{message['role']!r:.60}. Note: a role is a string such as "
                             "'system', 'user' or 'assistant'.")
        _check_content(message["content"], place)
    return messages


def _check_content(content: Any, place: str) -> None:
    if isinstance(content, str):
        return
    note = ("Note: content is a string, or a list of text blocks like "
            '[{"type": "text", "text": "Hello"}].')
    if not isinstance(content, (list, tuple)):
        raise InputError(f"{place} has content of type {type(content).__name__}: "
                         f"{content!r:.60}. {note}")
    for number, block in enumerate(content, 1):
        if not isinstance(block, Mapping):
            raise InputError(f"{place}'s content block {number} is a {type(block).__name__}, "
                             f"not a dict. {note}")
        kind = block.get("type")
        if kind != "text":
            raise InputError(
                f"{place}'s content block {number} is of type {kind!r}: the text-generation "
                "pipeline takes text only. Note: images, audio and video need a multimodal "
                "model; pass text blocks or a string.")
        if not isinstance(block.get("text"), str):
            raise InputError(f"{place}'s content block {number} has no string 'text'. {note}")


# --- the special tokens a template sees -------------------------------------------------------
def template_special_tokens(tokenizer) -> dict[str, Any]:
    """transformers' ``tokenizer.special_tokens_map``: the special tokens that are set, as
    strings (``additional_special_tokens`` as a list), then the model's extra ones."""
    config = tokenizer.config
    tokens: dict[str, Any] = {k: tokenizer.special_tokens.get(k) for k in _SPECIAL_KEYS}
    tokens = {k: v for k, v in tokens.items() if v}
    additional = config.get("additional_special_tokens")
    if additional:
        if not isinstance(additional, list):
            raise BundleError(f"tokenizer_config.json has additional_special_tokens="
                              f"{repr(additional)[:80]}: it must be a list of tokens. Note: fix "
                              "it, or export the checkpoint again.")
        tokens["additional_special_tokens"] = [
            _token_text(token, "additional_special_tokens") for token in additional]
    extra = config.get("extra_special_tokens") or {}
    if not isinstance(extra, Mapping):
        raise BundleError(f"tokenizer_config.json has extra_special_tokens={repr(extra)[:80]}: "
                          "it must map names to tokens. Note: fix it, or export the checkpoint "
                          "again.")
    for name, token in extra.items():
        text = _token_text(token, f"extra_special_tokens[{name!r}]")
        if text:
            tokens[str(name)] = text
    return tokens


def _token_text(token: Any, key: str) -> str:
    text = token.get("content") if isinstance(token, Mapping) else token
    if not isinstance(text, str):
        raise BundleError(f"tokenizer_config.json has {key} holding {repr(token)[:80]}: a "
                          "special token is a string or an object with a string 'content'. "
                          "Note: fix it, or export the checkpoint again.")
    return text


# --- reading ----------------------------------------------------------------------------------
def _read_template(path: Path, what: str) -> str:
    return read_text_file(path, what, error=BundleError, max_bytes=MAX_TEMPLATE_CHARS)


def _checked_size(text: str, where: str, error: type[EdgeportError] = BundleError) -> str:
    if len(text) > MAX_TEMPLATE_CHARS:
        raise error(f"The chat template in {where} is {len(text):,} characters long, over "
                          f"the limit of {MAX_TEMPLATE_CHARS:,}. Note: a chat template is a few "
                          "kB; this one is damaged or crafted. Replace it, or export again.")
    return text


def _templates_from_files(directory: Path) -> dict[str, tuple[str, str]]:
    """name -> (template, where) from chat_template.jinja ("default") and
    additional_chat_templates/."""
    found: dict[str, tuple[str, str]] = {}
    path = inside(directory, TEMPLATE_FILE, what="The chat template file")
    if path.exists():
        found["default"] = (_read_template(path, "The chat template"), str(path))
    folder = inside(directory, TEMPLATE_DIR, what="The chat templates folder", directory=True)
    if folder.is_dir():
        names = sorted(entry.name for entry in os.scandir(folder)
                       if entry.name.endswith(".jinja"))
        if len(names) > MAX_TEMPLATES:
            raise BundleError(f"{folder} holds {len(names)} chat templates, over the limit of "
                              f"{MAX_TEMPLATES}. Note: the folder is damaged or crafted.")
        for name in names:
            path = inside(folder, name, what="A chat template file")
            found[name.removesuffix(".jinja")] = (
                _read_template(path, "A chat template"), str(path))
    return found


def _templates_from_config(value: Any, where: str) -> str | dict[str, str] | None:
    """tokenizer_config.json's chat_template: a string, a list of {"name", "template"}, or an
    object of name -> template (what transformers accepts)."""
    if value is None or isinstance(value, str):
        return value
    pairs = None
    if isinstance(value, list) and all(isinstance(item, Mapping) for item in value):
        pairs = [(item.get("name"), item.get("template")) for item in value]
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    if pairs is None or not all(isinstance(n, str) and isinstance(t, str) for n, t in pairs):
        raise BundleError(f"{where} is {repr(value)[:80]}: it must be a template string, or a "
                          'list of {"name": ..., "template": ...} objects. Note: fix it, or '
                          "export the checkpoint again.")
    if len(pairs) > MAX_TEMPLATES:
        raise BundleError(f"{where} holds {len(pairs)} templates, over the limit of "
                          f"{MAX_TEMPLATES}. Note: the file is damaged or crafted.")
    return dict(pairs)


# --- rendering --------------------------------------------------------------------------------
class ChatTemplate:
    """The chat template(s) of a tokenizer, rendered as transformers renders them.

    ``template`` is one template, or several by name (where "default" is used, and "tool_use"
    when tools are given); ``where`` says where each came from, for messages.

    >>> chat = ChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    ...                     "{% if add_generation_prompt %}<assistant>{% endif %}")
    >>> chat.render([[{"role": "user", "content": "Hi"}]], add_generation_prompt=True)
    ['<user>Hi<assistant>']
    """

    def __init__(self, template: str | Mapping[str, str] | None, *,
                 special_tokens: Mapping[str, Any] | None = None,
                 where: str | Mapping[str, str] = "the template string"):
        self.single = not isinstance(template, Mapping)
        if self.single:
            self.templates = {} if template is None else {"default": template}
        else:
            self.templates = dict(template)
        names = self.templates
        self.where = ({name: where for name in names} if isinstance(where, str)
                      else {name: where.get(name, name) for name in names})
        for name, text in self.templates.items():
            _checked_size(text, self.where[name])
        self.special_tokens = dict(special_tokens or {})

    @classmethod
    def from_dir(cls, directory: str | os.PathLike | None, tokenizer) -> ChatTemplate:
        """The template(s) of a bundle's tokenizer: its ``.jinja`` files, which take priority
        as in transformers, else tokenizer_config.json's ``chat_template``. None of them is no
        error here: ``render`` says so."""
        special_tokens = template_special_tokens(tokenizer)
        if directory is not None:
            directory = Path(directory)
            files = _templates_from_files(directory)
            if list(files) == ["default"]:
                text, where = files["default"]
                return cls(text, special_tokens=special_tokens, where=where)
            if files:
                return cls({name: text for name, (text, _) in files.items()},
                           special_tokens=special_tokens,
                           where={name: where for name, (_, where) in files.items()})
        where = ("tokenizer_config.json" if directory is None
                 else str(directory / "tokenizer_config.json"))
        where = f"{where}'s chat_template"
        value = _templates_from_config(tokenizer.config.get("chat_template"), where)
        if isinstance(value, dict):
            return cls(value, special_tokens=special_tokens,
                       where={name: f"{where}[{name!r}]" for name in value})
        return cls(value, special_tokens=special_tokens, where=where)

    def __bool__(self) -> bool:
        return bool(self.templates)

    def pick(self, chat_template: str | None = None, tools=None) -> tuple[str, str, type]:
        """(template, where it came from, the error class for its faults): as transformers'
        ``get_chat_template`` picks it. ``chat_template`` is a template name, or a template
        given by the caller."""
        if chat_template is not None and not isinstance(chat_template, str):
            raise InputError(f"chat_template must be a string (a template, or the name of one "
                             f"of the bundle's), got {type(chat_template).__name__}.")
        if not self.single:
            if chat_template is not None and chat_template in self.templates:
                return self._own(chat_template)
            if chat_template is None:
                if tools is not None and "tool_use" in self.templates:
                    return self._own("tool_use")
                if "default" in self.templates:
                    return self._own("default")
                raise InputError(
                    f"This bundle's tokenizer has several chat templates "
                    f"({sorted(self.templates)}) and none is named 'default'. Note: pass "
                    "tokenizer_encode_kwargs={'chat_template': NAME} with one of those names.")
        elif chat_template is None:
            if not self.templates:
                raise InputError(_NO_TEMPLATE)
            return self._own("default")
        return (_checked_size(chat_template, "the chat_template argument", InputError),
                "the chat_template argument", InputError)

    def _own(self, name: str) -> tuple[str, str, type]:
        return self.templates[name], self.where[name], BundleError

    def render(self, conversations: Sequence[Sequence[Mapping]], *,
               add_generation_prompt: bool = False, continue_final_message: bool = False,
               tools: Iterable[Mapping] | None = None, documents: Iterable[Mapping] | None = None,
               chat_template: str | None = None, **variables) -> list[str]:
        """One prompt text per chat (each checked by ``check_chat``); ``variables`` are extra
        template variables (``enable_thinking=False``, ...), over the special tokens."""
        if continue_final_message and add_generation_prompt:
            raise InputError(
                "continue_final_message and add_generation_prompt cannot be used together. "
                "Note: continue_final_message continues the final message; "
                "add_generation_prompt starts a new assistant message.")
        reserved = sorted(RESERVED & set(variables))
        if reserved or not all(isinstance(name, str) for name in variables):
            raise InputError(f"Template variables {reserved or list(variables)} cannot be given "
                             "this way. Note: template variables are named by strings other "
                             f"than {sorted(RESERVED)}.")
        template, where, fault = self.pick(chat_template, tools)
        compiled = _compiled(template, where, fault)
        values = {**self.special_tokens, **variables, "tools": _tool_schemas(tools),
                  "documents": _documents(documents),
                  "add_generation_prompt": add_generation_prompt}
        rendered = []
        for number, chat in enumerate(conversations, 1):
            label = "The chat" if len(conversations) == 1 else f"Chat {number}"
            chat = copy.deepcopy(list(check_chat(chat, label)))
            final = None
            if continue_final_message:
                final = _tag_final_message(chat)
            text = _render(compiled, where, fault, {**values, "messages": chat})
            if final is not None:
                text = _cut_at_tag(text, final, where)
            rendered.append(text)
        return rendered


def _tool_schemas(tools) -> list | None:
    if tools is None:
        return None
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Iterable):
        raise InputError(f"tools must be a list of JSON schemas (dicts), got "
                         f"{type(tools).__name__}.")
    tools = list(tools)
    for tool in tools:
        if callable(tool) and not isinstance(tool, Mapping):
            raise InputError(
                f"tools holds the function {getattr(tool, '__name__', tool)!r}: the runtime "
                "cannot read a Python function's signature into a schema. Note: pass its JSON "
                "schema ({'type': 'function', 'function': {...}}), as transformers' "
                "get_json_schema makes it.")
        if not isinstance(tool, Mapping):
            raise InputError(f"tools holds a {type(tool).__name__}: a tool is a JSON schema "
                             "(a dict).")
    return tools


def _documents(documents) -> list | None:
    if documents is None:
        return None
    if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Iterable):
        raise InputError(f"documents must be a list of dicts, got {type(documents).__name__}.")
    documents = list(documents)
    if not all(isinstance(document, Mapping) for document in documents):
        raise InputError("documents must be a list of dicts, with 'title' and 'text' keys.")
    return documents


def _tag_final_message(chat: list) -> str:
    """transformers' continue_final_message: the tag after the final message's text (its last
    text block's); that text, to find it again."""
    content = chat[-1]["content"]
    if isinstance(content, str):
        chat[-1]["content"] = content + CONTINUE_FINAL_MESSAGE_TAG
        return content
    for block in reversed(content):
        if "text" in block:
            final = block["text"]
            block["text"] = final + CONTINUE_FINAL_MESSAGE_TAG
            return final
    raise InputError("continue_final_message is set but the final message has no text to "
                     "continue. Note: give it a text block, or a string.")


def _cut_at_tag(rendered: str, final: str, where: str) -> str:
    tag = CONTINUE_FINAL_MESSAGE_TAG
    if final.strip() not in rendered or tag.strip() not in rendered:
        raise InputError(
            f"continue_final_message is set but the final message does not appear in the chat "
            f"after applying the chat template ({where}). This can happen if the chat template "
            "deletes portions of the final message. Note: check that the template and the "
            "final message fit, or pass continue_final_message=False.")
    at = rendered.rindex(tag.strip())
    if rendered[at:at + len(tag)] == tag:
        return rendered[:at]
    return rendered[:at].rstrip()  # the template trimmed the message's trailing space


# --- the sandbox --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _environment():
    """transformers' Jinja environment (``_compile_jinja_template``), stricter where a
    template would escape or blow up."""
    import jinja2
    import jinja2.ext
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.utils import Namespace

    class GenerationBlock(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}``: marks assistant text for transformers'
        assistant-token masks; rendered as its body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body
                                          ).set_lineno(lineno)

        @jinja2.pass_eval_context
        def _body(self, context, caller):
            return caller()

    class Sandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+"})

        def unsafe_undefined(self, obj, attribute):
            raise SecurityError(f"access to attribute {attribute!r} of "
                                f"{type(obj).__name__!r} object is unsafe.")

        def call_binop(self, context, operator, left, right):
            _check_size(operator, left, right)
            return super().call_binop(context, operator, left, right)

        def call(self, context, obj, /, *args, **kwargs):  # every call: macros recurse
            for value in (*args, *kwargs.values()):
                _check_length(value)
            return super().call(context, obj, *args, **kwargs)

    class BoundedNamespace(Namespace):
        """namespace(): the one object a template may change, so the one a loop can grow."""

        def __setitem__(self, name, value):
            _check_length(value)
            super().__setitem__(name, value)

    def raise_exception(message):
        raise _Refusal(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    environment = Sandbox(trim_blocks=True, lstrip_blocks=True,
                          extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    environment.globals["namespace"] = BoundedNamespace
    return environment


def _check_length(value: Any) -> None:
    """Refuse a string or list past the rendering limit where a template keeps it: in a
    namespace (a loop doubling it), or passed to a call (a macro recursing with it)."""
    from jinja2.exceptions import SecurityError

    if isinstance(value, (str, list, tuple)) and len(value) > MAX_RENDERED_CHARS:
        raise SecurityError(f"the template keeps a sequence of {len(value):,} items.")


def _check_size(operator: str, left: Any, right: Any) -> None:
    """Refuse ``'a' * 10**9``, ``10 ** 10**9`` and string doubling before Python makes them."""
    from jinja2.exceptions import SecurityError

    sized = (str, list, tuple)
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if (isinstance(sequence, sized) and isinstance(count, int)
                    and len(sequence) * count > MAX_RENDERED_CHARS):
                raise SecurityError(f"the template repeats a sequence of {len(sequence):,} "
                                    f"items {count:,} times.")
    elif operator == "+":
        if (isinstance(left, sized) and isinstance(right, sized)
                and len(left) + len(right) > MAX_RENDERED_CHARS):
            raise SecurityError(f"the template joins sequences of {len(left) + len(right):,} "
                                "items.")
    elif (isinstance(left, int) and isinstance(right, int) and abs(left) > 1
          and right * max(left.bit_length(), 1) > 2**16):
        raise SecurityError(f"the template raises a number to the power {right:,}.")


@functools.lru_cache(maxsize=32)
def _compiled(template: str, where: str, fault: type[EdgeportError]):
    from jinja2.exceptions import TemplateSyntaxError

    try:
        return _environment().from_string(template)
    except TemplateSyntaxError as error:
        raise fault(f"The chat template in {where} is not a valid Jinja template: "
                    f"{error.message} (line {error.lineno}). Note: fix it, or export the "
                    "checkpoint again from a source whose template works.") from None
    except (RecursionError, MemoryError):
        raise fault(f"The chat template in {where} is nested too deeply to be read. Note: the "
                    "template is damaged or crafted; replace it.") from None
    except Exception as error:  # an untrusted template: whatever jinja2 raises is told plainly
        raise fault(f"The chat template in {where} cannot be compiled: "
                    f"{type(error).__name__}: {str(error)[:200]}. Note: fix it, or export the "
                    "checkpoint again.") from None


def _render(compiled, where: str, fault: type[EdgeportError], values: dict) -> str:
    from jinja2.exceptions import SecurityError

    pieces, length = [], 0
    try:
        for piece in compiled.generate(**values):
            length += len(piece)
            if length > MAX_RENDERED_CHARS:
                raise InputError(
                    f"The chat template in {where} makes a prompt of over "
                    f"{MAX_RENDERED_CHARS:,} characters. Note: shorten the messages; if they "
                    "are short, the template is broken.")
            pieces.append(piece)
    except EdgeportError:
        raise
    except _Refusal as refusal:
        raise InputError(
            f"The chat template in {where} refuses these messages: {refusal}. Note: the "
            "template decides which roles it takes and in which order; change the messages "
            "to fit it.") from None
    except SecurityError as error:
        raise fault(f"The chat template in {where} did something the sandbox forbids: {error} "
                    "Note: a chat template only formats messages; this one is broken or "
                    "crafted. Use a bundle from a source you trust.") from None
    except Exception as error:  # an untrusted template: whatever it raises is told plainly
        raise InputError(
            f"The chat template in {where} failed on these messages: {type(error).__name__}: "
            f"{str(error)[:200]}. Note: check that the messages have the roles and content "
            "the template expects; if they do, the template is broken.") from None
    return "".join(pieces)
