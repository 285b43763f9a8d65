"""Whisper's conventions around its generated tokens, as transformers 4.57 applies them, in
plain Python and numpy. The speech-recognition pipeline (``runtime.tasks``) runs the model;
this module decides what it is prompted with and what its tokens mean:

    prompt_tokens       the decoder's prompt: <|startoftranscript|>, the language (given, or
                        detected by the caller), the task, <|notimestamps|> unless timestamps
                        (``WhisperGenerationMixin._retrieve_init_tokens``)
    generated_tokens    one generated row without its prompt, padding and eos
    split_segments      a window's tokens cut at timestamp pairs, and how far to move on in
                        the audio (``_retrieve_segment``)
    transcript          the pipeline's result from the tokens of each window or chunk: text,
                        and segment timestamps or languages (``tokenization_whisper._decode_asr``
                        with ``_find_longest_common_sequence``)

Token ids from ``no_timestamps_token_id + 1`` on are timestamps, one every ``time_precision``
(0.02) seconds of a 30 s window. With timestamps from 100 here, a window's tokens
"<|0.00|> a b <|1.00|><|1.00|> c <|2.40|>" are two segments, each between its timestamps, and
the window is done (it ends with a lone timestamp):

>>> split_segments(np.array([100, 7, 8, 150, 150, 9, 220]), 100, 3000, 2)
([array([100,   7,   8, 150]), array([150,   9, 220])], 3000)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..generation.config import GenerationConfig
from . import whisper_fallback, whisper_timing

# transformers' LANGUAGES (tokenization_whisper.py): the language tokens' codes and names, in
# the order of the tokens (large-v3 adds "yue").
LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian",
    "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian",
    "sw": "swahili", "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala",
    "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans",
    "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi",
    "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek",
    "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan",
    "tl": "tagalog", "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian",
    "ln": "lingala", "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese",
    "yue": "cantonese",
}
# transformers' TO_LANGUAGE_CODE: names (and a few aliases) to codes.
TO_LANGUAGE_CODE = {
    **{name: code for code, name in LANGUAGES.items()},
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
    "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
    "castilian": "es", "mandarin": "zh",
}
TASKS = ("translate", "transcribe")
_TIMESTAMP_TEXT = re.compile(r"<\|(\d+\.\d+)\|>")


# --- the prompt -------------------------------------------------------------------------------
def check_language_and_task(config: GenerationConfig, *, given: Mapping[str, object]) -> None:
    """A clear error for a language or task the model cannot take, before any audio is read:
    ``config``'s ``language`` and ``task`` (the call's, else the model's), and, as
    transformers' ``_set_language_and_task``, any ``given`` by the call to an English-only
    model."""
    extras = config.extras
    asked = {name: value for name, value in given.items() if value is not None}
    if extras.get("is_multilingual") is False and asked:
        raise InputError(
            f"{' and '.join(f'{k}={v!r}' for k, v in asked.items())} cannot be used with this "
            "English-only Whisper model (its generation_config.json has is_multilingual "
            "false): it only transcribes English. Note: leave language and task out, or use a "
            "multilingual checkpoint."
        )
    language, task = extras.get("language"), extras.get("task")
    if language is not None:
        if not isinstance(language, str):
            raise InputError(
                f"language must be one language as a string, got {language!r}. Note: e.g. "
                "language='en', 'english' or '<|en|>'; the pipeline transcribes each input on "
                "its own, so one language serves the call."
            )
        language_token_id(language, _table(config, "lang_to_id", "language"))
    if task is not None:
        if task not in TASKS:
            raise InputError(f"task={task!r} is not a Whisper task. Note: use 'transcribe' "
                             "(speech to text in its language) or 'translate' (to English).")
        task_ids = _table(config, "task_to_id", "task")
        if task not in task_ids:
            raise InputError(f"This model has no {task!r} task token. Note: its tasks are "
                             f"{sorted(task_ids)}.")


def language_token_id(language: str, lang_to_id: Mapping[str, int]) -> int:
    """The token of a language given as a code ("en"), a name ("English") or a token
    ("<|en|>"), as transformers reads it.

    >>> language_token_id("English", {"<|en|>": 50259})
    50259
    """
    language = language.lower()
    if language in lang_to_id:
        token = language
    elif language in TO_LANGUAGE_CODE:
        token = f"<|{TO_LANGUAGE_CODE[language]}|>"
    elif language in TO_LANGUAGE_CODE.values():
        token = f"<|{language}|>"
    else:
        codes = len(language) == 2
        choices = sorted(set(TO_LANGUAGE_CODE.values()) if codes else TO_LANGUAGE_CODE)
        raise InputError(
            f"Unknown language {language!r}. Note: give a language code, a name or a token "
            f"(e.g. 'en', 'english', '<|en|>'); the {'codes' if codes else 'names'} are: "
            f"{', '.join(choices)}."
        )
    if token not in lang_to_id:
        raise InputError(
            f"This model has no {token} token (its generation_config.json's lang_to_id lacks "
            f"it). Note: its languages are {', '.join(sorted(lang_to_id))}."
        )
    return int(lang_to_id[token])


def check_extras(extras: Mapping[str, object]) -> None:
    """Whisper's own generation settings (from generation_config.json, a bundle file, or the
    call) have the shapes the prompt and the timestamps need: token ids are integers, the
    tables map names to them, forced_decoder_ids is [[position, id or null], ...]."""
    def fail(key: str, wanted: str) -> None:
        raise InputError(f"Whisper's {key}={repr(extras.get(key))[:80]} is not {wanted}. Note: "
                         "fix it in the bundle's generation_config.json (or what the call "
                         "passes).")

    for key in ("no_timestamps_token_id", "max_initial_timestamp_index"):
        if extras.get(key) is not None and not _token_id(extras[key]):
            fail(key, "a token id (an integer of at least 0)")
    for key in ("lang_to_id", "task_to_id"):
        table = extras.get(key)
        if table is not None and not (isinstance(table, Mapping) and all(
                isinstance(name, str) and _token_id(token) for name, token in table.items())):
            fail(key, 'a table of names to token ids, like {"<|en|>": 50259}')
    forced = extras.get("forced_decoder_ids")
    if forced is not None and not (isinstance(forced, Sequence) and not isinstance(forced, str)
                                   and all(isinstance(pair, Sequence) and len(pair) == 2
                                           and _token_id(pair[0])
                                           and (pair[1] is None or _token_id(pair[1]))
                                           for pair in forced)):
        fail("forced_decoder_ids", "a list of [position, token id] pairs")


def _token_id(value: object) -> bool:
    # below 2**63: ids become numpy int64 arrays (whether the model has them is checked there)
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def prompt_tokens(config: GenerationConfig, *, timestamps: bool | None,
                  detect_language: Callable[[], int]) -> list[int]:
    """The decoder's prompt for one input, from ``config`` (its ``language`` and ``task``
    extras set by the call or the model, else its old-style ``forced_decoder_ids``).
    ``detect_language`` gives the language token when the prompt needs one and none is set
    (a multilingual model; transformers detects it from the first step's logits).

    >>> config = GenerationConfig.from_dict({"decoder_start_token_id": 1, "task": "transcribe",
    ...     "task_to_id": {"transcribe": 7}, "lang_to_id": {"<|en|>": 2},
    ...     "no_timestamps_token_id": 9})
    >>> prompt_tokens(config, timestamps=False, detect_language=lambda: 2)
    [1, 2, 7, 9]
    """
    extras = config.extras
    check_extras(extras)
    language, task = extras.get("language"), extras.get("task")
    if config.decoder_start_token_id is None:
        raise InputError("Whisper needs decoder_start_token_id (<|startoftranscript|>) to start "
                         "its prompt. Note: set it in the bundle's generation_config.json.")
    tokens: list[int | None] = [config.decoder_start_token_id]
    forced = extras.get("forced_decoder_ids") if task is None and language is None else None
    if forced and forced[0][0] == 1:  # [[1, language], [2, task], ...]: the old way to prompt
        for position, (index, token) in enumerate(forced, start=1):
            if index != position:
                raise InputError(
                    f"forced_decoder_ids {forced} do not follow Whisper's prompt (positions 1, "
                    "2, ... in order). Note: fix generation_config.json, or pass language and "
                    "task instead."
                )
            tokens.append(token)
    if language is not None:
        language_id = language_token_id(language, _table(config, "lang_to_id", "language"))
    elif "lang_to_id" in extras and (len(tokens) <= 1 or tokens[1] is None):
        language_id = detect_language()
    else:
        language_id = None
    if language_id is not None:
        if len(tokens) > 1:
            tokens[1] = language_id
        else:
            tokens.append(language_id)
    task_ids = extras.get("task_to_id") or {}
    if task is None and language is not None and task_ids and not any(
            t in tokens for t in task_ids.values()):
        task = "transcribe"
    if task is not None:
        if task not in task_ids:
            raise InputError(f"This model has no {str(task)[:40]!r} task token. Note: its tasks "
                             f"are {sorted(task_ids)[:10]}; fix task, or the bundle's "
                             "generation_config.json.")
        tokens.append(task_ids[task])
    no_timestamps = extras.get("no_timestamps_token_id")
    if not timestamps and no_timestamps is not None and tokens[-1] != no_timestamps:
        tokens.append(no_timestamps)
    elif timestamps and tokens[-1] == no_timestamps:
        tokens.pop()
    return [int(t) for t in tokens if t is not None]


def _table(config: GenerationConfig, key: str, what: str) -> Mapping:
    table = config.extras.get(key)
    if not isinstance(table, Mapping):
        raise InputError(
            f"The model's generation_config.json has no {key}, so {what} cannot be chosen "
            "(transformers refuses it too). Note: leave it out, or export a checkpoint whose "
            "generation_config.json lists lang_to_id and task_to_id."
        )
    return table


# --- a window's tokens ------------------------------------------------------------------------
def generated_tokens(sequence: np.ndarray, prompt_length: int, pad_token_id: int | None,
                     eos_token_id) -> np.ndarray:
    """A generated row without its prompt, its padding and its eos, as transformers cuts it
    (``generate_with_fallback``): when the row ends in padding, as many tokens as it holds pad
    ids (one fewer when the pad is the eos) go from its end.

    >>> generated_tokens(np.array([1, 2, 5, 6, 0, 0, 0]), 2, 0, 0)
    array([5, 6])
    """
    tokens = whisper_fallback.kept_tokens(sequence, prompt_length, pad_token_id, eos_token_id)
    # one id, as Whisper's files give it, or several (any of them ends the row)
    eos = () if eos_token_id is None else tuple(np.atleast_1d(eos_token_id).tolist())
    if len(tokens) and tokens[-1] in eos:
        tokens = tokens[:-1]
    return tokens


def split_segments(tokens: np.ndarray, timestamp_begin: int, window_frames: int,
                   input_stride: int) -> tuple[list[np.ndarray], int]:
    """(the segments of a window's tokens, the feature frames to move on by), as transformers'
    ``_retrieve_segment``: segments end at each pair of timestamps. When the tokens end with a
    lone timestamp (or hold no pair), the window is done; otherwise the tokens after the last
    pair are dropped and the next window starts at that pair's time (``input_stride`` frames
    per timestamp step).

    >>> split_segments(np.array([10, 1, 12, 13, 2]), 10, 3000, 2)
    ([array([10,  1, 12, 13])], 4)
    """
    is_timestamp = tokens >= timestamp_begin
    single_ending = is_timestamp[-2:].tolist() == [False, True]
    ends = (np.flatnonzero(is_timestamp[:-1] & is_timestamp[1:]) + 1).tolist()
    if not ends:
        return [tokens], window_frames
    if single_ending:
        ends.append(len(tokens))
    else:
        ends[-1] += 1  # the pair's second timestamp stays with its segment
    starts = [0, *ends[:-1]]
    segments = [tokens[start:end] for start, end in zip(starts, ends)]
    if single_ending:
        return segments, window_frames
    return segments, int(tokens[ends[-1] - 2] - timestamp_begin) * input_stride


# --- the result -------------------------------------------------------------------------------
def transcript(outputs: Sequence[tuple[Sequence[int], tuple[float, float, float] | None]],
               tokenizer, *, timestamps: bool, language: bool, time_precision: float,
               segment_size: int = 1500,
               token_times: Sequence[Sequence[float]] | None = None) -> dict:
    """The pipeline's result, ``{"text"}`` and, with ``timestamps`` or ``language``,
    ``"chunks": [{"timestamp": (start, end)}, {"language": name}, "text"]``, from the
    generated tokens of each window: ``outputs`` holds (tokens, stride), the stride
    (chunk, left, right) in seconds for the chunks of ``chunk_length_s`` (None otherwise).

    transformers' ``_decode_asr`` state machine, quirks included: a language token sets the
    language of the chunk (and, without timestamps, a change of language starts a new chunk);
    a timestamp opens or closes a chunk, those inside a stride are skipped; a timestamp below
    the previous one starts a new 30 s window (``segment_size`` steps); the text of the
    overlapping chunks is merged on their longest common token run. Times are rounded to
    0.01 s, with float arithmetic in transformers' order, so they come out equal.
    ``tokenizer`` is the bundle's TextTokenizer.

    ``token_times`` (``return_timestamps="word"``): the time of each token of each output
    (``whisper_timing.token_timestamps``); the chunks are then the words, each
    ``{"text", "timestamp"}`` (and ``"language"``), and overlapping chunks are merged on their
    tokens and times.
    """
    words = token_times is not None
    timestamp_begin = tokenizer.token_to_id("<|notimestamps|>") + 1
    special = tokenizer.all_special_ids
    previous_prompt = tokenizer.token_to_id("<|startofprev|>")
    start_of_transcript = tokenizer.token_to_id("<|startoftranscript|>")
    last_language = None
    chunks: list[dict] = []

    def new_chunk() -> dict:
        return {"language": last_language, "timestamp": [None, None], "text": ""}

    def text_of(pieces: list[list[int]]) -> str:
        resolved = longest_common_sequence(pieces)
        return _TIMESTAMP_TEXT.sub("", tokenizer.decode(resolved))

    def close(chunk: dict, pieces: list[list[int]], times: list[list[tuple]]) -> None:
        """A chunk's text (and words) from its pieces, merged on their overlaps."""
        if not words:
            chunk["text"] = text_of(pieces)
            return
        resolved, resolved_times = longest_common_sequence(pieces, times)
        chunk["text"] = _TIMESTAMP_TEXT.sub("", tokenizer.decode(resolved))
        chunk["words"] = whisper_timing.word_chunks(tokenizer, resolved, resolved_times,
                                                    last_language, language)

    chunk = new_chunk()
    time_offset = 0.0
    previous_tokens: list[list[int]] = []
    previous_times: list[list[tuple[float, float]]] = []
    current_times: list[tuple[float, float]] = []
    skip = False
    for number, (token_ids, stride) in enumerate(outputs):
        token_ids = _without_previous_text(list(token_ids), previous_prompt, start_of_transcript)
        times = [float(t) for t in token_times[number]] if words else []
        last_timestamp = None
        first_timestamp = timestamp_begin
        cur_max_timestamp = prev_segments_len = penultimate_timestamp = 0.0
        if stride is not None:
            chunk_len, stride_left, stride_right = stride
            time_offset -= stride_left
            right_stride_start = chunk_len - stride_right
            if stride_left:
                first_timestamp = stride_left / time_precision + timestamp_begin
            if stride_right:
                for token in reversed(token_ids):
                    if token >= timestamp_begin:
                        if (last_timestamp is not None and
                                (token - timestamp_begin) * time_precision < right_stride_start):
                            break
                        last_timestamp = token
        current_tokens: list[int] = []
        current_times = []
        for i, token in enumerate(token_ids):
            if token in special:
                name = LANGUAGES.get(tokenizer.decode([token])[2:-2])
                if name is None:
                    continue  # other special tokens carry no text
                if last_language and name != last_language and not timestamps:
                    previous_tokens.append(current_tokens)
                    chunk["text"] = text_of(previous_tokens)
                    chunks.append(chunk)
                    previous_tokens, current_tokens = [], []
                    chunk = new_chunk()
                chunk["language"] = last_language = name
            elif token >= timestamp_begin:
                timestamp = float((token - timestamp_begin) * time_precision)
                if timestamp < cur_max_timestamp:  # the next window has started
                    single_ending = i >= 2 and not (token_ids[i - 1] >= timestamp_begin and
                                                    token_ids[i - 2] >= timestamp_begin)
                    if single_ending:
                        prev_segments_len += time_precision * segment_size
                    else:
                        cur_max_timestamp = penultimate_timestamp
                        prev_segments_len += penultimate_timestamp
                penultimate_timestamp = cur_max_timestamp
                cur_max_timestamp = timestamp
                time = round((token - timestamp_begin) * time_precision + time_offset
                             + prev_segments_len, 2)
                if last_timestamp and token >= last_timestamp:
                    skip = True  # in the right stride: the next chunk has it
                elif skip or (previous_tokens and token < first_timestamp):
                    skip = False
                elif chunk["timestamp"][0] is None:
                    chunk["timestamp"][0] = time
                elif time != chunk["timestamp"][0]:  # the same time twice starts, not ends
                    chunk["timestamp"][1] = time
                    previous_tokens.append(current_tokens)
                    previous_times.append(current_times)
                    close(chunk, previous_tokens, previous_times)
                    chunks.append(chunk)
                    previous_tokens, current_tokens = [], []
                    previous_times, current_times = [], []
                    chunk = new_chunk()
            else:
                current_tokens.append(token)
                if words:  # (transformers indexes the times as the tokens, prompt cut or not)
                    start = round((times[i - 1] if i else 0.0) + time_offset, 2)
                    current_times.append((start, round(times[i] + time_offset, 2)))
        if stride is not None:
            time_offset += chunk_len - stride_right
        if current_tokens:
            previous_tokens.append(current_tokens)
            previous_times.append(current_times)
        elif not any(previous_tokens):
            chunk = new_chunk()
            previous_tokens, previous_times = [], []
    if previous_tokens:  # text after the last timestamp, or no timestamps at all
        close(chunk, previous_tokens, previous_times)
        chunks.append(chunk)

    result = {"text": "".join(chunk["text"] for chunk in chunks)}
    if words:
        result["chunks"] = [word for chunk in chunks for word in chunk["words"]]
    elif timestamps or language:
        for chunk in chunks:
            if timestamps:
                chunk["timestamp"] = tuple(chunk["timestamp"])
            else:
                del chunk["timestamp"]
            if not language:
                del chunk["language"]
        result["chunks"] = chunks
    return result


def longest_common_sequence(sequences: Sequence[Sequence[int]],
                            times: Sequence[Sequence[tuple]] | None = None):
    """Token runs of overlapping chunks merged into one, as transformers' Whisper tokenizer
    merges them: each next run is slid along the end of the merged one, the overlap with the
    most matching tokens (at least two; ties to the longer overlap) is taken, its left half from
    the left run and its right half from the right one.

    With ``times`` (each token's (start, end), word timestamps), a token matches only where
    its left time is not after its right one, the times are cut as the tokens are, and the
    result is (tokens, times).

    >>> longest_common_sequence([[1, 2, 3, 4], [3, 4, 5, 6]])
    [1, 2, 3, 4, 5, 6]
    """
    timed = bool(times)
    left = np.asarray(sequences[0], dtype=np.int64)
    left_times = list(times[0]) if timed else []
    merged: list[int] = []
    merged_times: list[tuple] = []
    for number, right in enumerate(sequences[1:], start=1):
        right = np.asarray(right, dtype=np.int64)
        best, best_span = 0.0, (len(left), len(left), 0, 0)
        for i in range(1, len(left) + len(right)):
            left_start = max(0, len(left) - i)
            left_stop = min(len(left), len(left) + len(right) - i)
            right_start, right_stop = max(0, i - len(left)), min(len(right), i)
            same = left[left_start:left_stop] == right[right_start:right_stop]
            if timed:
                same = [bool(match) and left_times[left_start + k] <= times[number][right_start + k]
                        for k, match in enumerate(same)]
            matches = np.sum(same)
            matching = matches / i + i / 10000.0  # the epsilon favours long perfect matches
            if matches > 1 and matching > best:
                best, best_span = matching, (left_start, left_stop, right_start, right_stop)
        left_start, left_stop, right_start, right_stop = best_span
        merged.extend(left[:(left_start + left_stop) // 2].tolist())
        left = right[(right_start + right_stop) // 2:]
        if timed:
            merged_times.extend(left_times[:(left_start + left_stop) // 2])
            left_times = list(times[number])[(right_start + right_stop) // 2:]
    if times is None:
        return merged + left.tolist()
    return merged + left.tolist(), merged_times + left_times


def _without_previous_text(tokens: list[int], previous_prompt: int | None,
                           start_of_transcript: int | None) -> list[int]:
    """A row that starts with <|startofprev|> (a text prompt) from its
    <|startoftranscript|> on (transformers' ``_strip_prompt``)."""
    if tokens and tokens[0] == previous_prompt:
        return tokens[tokens.index(start_of_transcript):] if start_of_transcript in tokens else []
    return tokens

