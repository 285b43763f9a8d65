"""The automatic-speech-recognition task: audio to text, as transformers'
AutomaticSpeechRecognitionPipeline gives it, for both kinds of speech model:

- CTC models (Wav2Vec2, HuBERT; "audio-encoder" bundles), ``AutomaticSpeechRecognitionPipeline``:
  greedy CTC decoding (repeats collapsed, the blank dropped, the word delimiter a space),
  character or word timestamps; chunks' logits stitched without their strides.
- Whisper ("encoder-decoder" bundles), ``WhisperSpeechRecognitionPipeline``: generation
  through the shared loop (greedy or beam search) from Whisper's prompt (language given or
  detected, task, <|notimestamps|>), with its suppressed tokens and timestamp rules; segment
  timestamps; audio over 30 s transcribed window after window (long-form); chunks' texts
  merged on their overlaps (``runtime.audio.whisper``).

Both cut long audio into overlapping chunks with ``chunk_length_s`` and ``stride_length_s``.
``runtime.tasks.pipeline_class`` picks the class by the bundle's family."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real

import numpy as np

from ..audio import whisper, whisper_fallback, whisper_timing
from ..audio.ctc import CtcTokenizer
from ..errors import BundleError, InputError
from ..generation import GenerationConfig, generation_config_for_inputs, run
from ..generation.logits import (
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    WhisperTimeStampLogitsProcessor,
    log_softmax,
    logits_processors,
    softmax,
)
from ..generation.onnx_model import FAMILY_GRAPHS
from .audio import AudioPipeline
from .base import config_count
from .generation import GenerationPipeline


class AutomaticSpeechRecognitionPipeline(AudioPipeline):
    """``{"text": ...}`` per signal; with ``return_timestamps="char"`` or ``"word"`` also
    ``"chunks": [{"text", "timestamp": (start_s, end_s)}]``.

    >>> transcribe = pipeline("automatic-speech-recognition", model="wav2vec2")  # doctest: +SKIP
    >>> transcribe("jfk.flac", chunk_length_s=10)                              # doctest: +SKIP
    {'text': 'AND SO MY FELLOW AMERICANS ASK NOT ...'}
    """

    task = "automatic-speech-recognition"
    parameters = {"chunk_length_s": 0, "stride_length_s": None, "return_timestamps": None,
                  "ignore_warning": None}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.bundle is None:
            raise InputError("The automatic-speech-recognition pipeline reads its vocabulary "
                             "from a bundle. Note: make it with pipeline(model=BUNDLE).")
        self.ctc = CtcTokenizer.from_dir(self.bundle.path)
        self._check(self.defaults)

    def __call__(self, inputs, **kwargs):
        args = self._check(self.arguments(kwargs))
        signals, single = self.signals(inputs)
        results = [self._transcribe(signal, args) for signal in signals]
        return results[0] if single else results

    def _check(self, args):
        stamps = args["return_timestamps"]
        if stamps not in (None, False, "char", "word"):
            raise InputError(
                f"return_timestamps={stamps!r} is not possible for a CTC model. Note: use "
                "'char' or 'word' (True is Whisper's segment timestamps)."
            )
        return _check_chunk_length(args)

    # --- one signal -------------------------------------------------------------------------
    def _transcribe(self, signal: np.ndarray, args) -> dict:
        pieces = []
        for chunk, (left, right) in _chunks(signal, args, self.feature_extractor.sampling_rate,
                                            self.inputs_to_logits_ratio):
            tokens = self._tokens(chunk)
            if args["chunk_length_s"]:  # strides in samples -> logits frames, as transformers
                total, left, right = _rescale_stride(len(chunk), left, right,
                                                     1 / self.inputs_to_logits_ratio)
                tokens = tokens[left:total - right]
            pieces.append(tokens)
        tokens = np.concatenate(pieces)
        stamps = args["return_timestamps"]
        if not stamps:
            return {"text": self.ctc.decode(tokens)}
        text, offsets = self.ctc.decode(tokens, offsets=stamps)
        ratio, rate = self.inputs_to_logits_ratio, self.feature_extractor.sampling_rate
        # frames * samples per frame / rate, in that order: transformers' float rounding
        chunks = [{"text": item[stamps], "timestamp": (item["start_offset"] * ratio / rate,
                                                      item["end_offset"] * ratio / rate)}
                  for item in offsets]
        return {"text": text, "chunks": chunks}

    def _tokens(self, chunk: np.ndarray) -> np.ndarray:
        """The argmax of the CTC logits, one id per frame."""
        feed = self.features([chunk], return_attention_mask=True)
        logits = self.engine.run(feed)["logits"]
        return logits[0].argmax(-1)


# Whisper's generate() arguments the pipeline takes (transformers passes them through): they
# live with the generation config's custom keys, where the model's file may set them too.
WHISPER_ARGUMENTS = ("language", "task", "is_multilingual", "compression_ratio_threshold",
                     "logprob_threshold", "no_speech_threshold")
# transformers' Whisper generate() arguments (and generation_config.json keys) that edgeport's
# Whisper does not implement -> what they would do.
_NOT_IMPLEMENTED = {
    "condition_on_prev_tokens": "conditioning each window on the text of the one before",
    "prompt_ids": "prompting with a text",
    "prompt_condition_type": "prompting with a text",
    "return_token_timestamps": "token timestamps (they need cross-attention weights)",
    "return_segments": "returning the segments of long-form generation",
    "num_segment_frames": "windows of another length than the encoder's",
}


class WhisperSpeechRecognitionPipeline(GenerationPipeline, AudioPipeline):
    """Whisper: ``{"text": ...}`` per signal; with ``return_timestamps=True`` (segments) or
    ``return_language=True`` also ``"chunks": [{"timestamp": (start_s, end_s), "text"}]``
    (``"language"`` in each chunk for the latter).

    As transformers' pipeline: beam search with 5 beams unless the model's or the call's
    settings say otherwise; ``language`` ("en", "english" or "<|en|>") and ``task``
    ("transcribe" or "translate") as arguments or in ``generate_kwargs``; without a language a
    multilingual model detects it, input by input (chunk by chunk, window by window); audio over
    30 s without ``chunk_length_s`` is transcribed 30 s window after window, which needs
    timestamps (``return_timestamps=True``, or a generation_config.json that does not set
    return_timestamps false), as in transformers.

    ``return_timestamps="word"``: each word with its time, from the alignment heads'
    cross-attention weights (a bundle exported with ``--word-timestamps``;
    ``runtime.audio.whisper_timing``). ``temperature`` (one, or a list for the fallback) with
    ``compression_ratio_threshold``, ``logprob_threshold`` and ``no_speech_threshold``: each
    window decoded again, sampling at the next temperature, while it fails the thresholds
    (``runtime.audio.whisper_fallback``); sampling draws from the runtime's RNG (``seed``
    makes it reproducible), so sampled tokens differ from transformers'.

    Refused with a clear error, where transformers would act: text prompts, conditioning on
    the previous window (``_NOT_IMPLEMENTED``).

    >>> transcribe = pipeline("automatic-speech-recognition", model="whisper")  # doctest: +SKIP
    >>> transcribe("jfk.flac", return_timestamps=True, generate_kwargs={"language": "en"})
    ...                                                                       # doctest: +SKIP
    {'text': ' And so my fellow Americans ...', 'chunks': [{'timestamp': (0.0, 10.9), ...}]}
    """

    task = "automatic-speech-recognition"
    preprocessors = ("feature_extractor", "tokenizer")
    pipeline_generation_defaults = {"max_new_tokens": 256, "num_beams": 5}
    parameters = {"chunk_length_s": 0, "stride_length_s": None, "return_timestamps": None,
                  "return_language": None, "ignore_warning": None, "temperature": None,
                  **dict.fromkeys(WHISPER_ARGUMENTS)}

    def __init__(self, **kwargs):
        super().__init__(**self._generation_arguments(kwargs))
        # the encoder's positions per 30 s window: timestamps count them, and divide by them
        self.source_positions = config_count(self.config, "max_source_positions")
        frames = self.feature_extractor.nb_max_frames
        if self.source_positions is None or self.source_positions > frames:
            raise BundleError(
                f"config.json has max_source_positions={self.source_positions}: a Whisper model "
                f"has 1 to {frames} encoder positions per window ({frames} feature frames). "
                "Note: fix it in the bundle's config.json (Whisper's is 1500), or export the "
                "checkpoint again."
            )
        self._alignment = None  # the alignment heads' engine, made for the first word timing
        self._check(self.defaults)

    def __call__(self, inputs, **kwargs):
        args, config, stamps = self._settings(kwargs)
        signals, single = self.signals(inputs)
        results = [self._transcribe(signal, args, config, stamps) for signal in signals]
        return results[0] if single else results

    def generate_tokens(self, input_features: np.ndarray, **kwargs) -> list[int]:
        """The token ids Whisper generates for one input's log-mel features (1 x mel bins x
        frames; over 3000 frames, window after window), with the pipeline's settings and the
        call's (``num_beams``, ``language``, ``return_timestamps``, ...): what transformers'
        ``model.generate(input_features, ...)`` returns, and what the pipeline decodes.

        >>> features = transcribe.feature_extractor([signal])["input_features"]  # doctest: +SKIP
        >>> transcribe.generate_tokens(features, num_beams=1)                  # doctest: +SKIP
        [440, 1029, 11]
        """
        features = np.asarray(input_features, dtype=np.float32)
        if features.ndim != 3 or len(features) != 1:
            raise InputError(f"input_features must be one input's log-mel features, (1, mel "
                             f"bins, frames), got shape {features.shape}.")
        args, config, stamps = self._settings(kwargs)
        return self._generate(features, config, stamps, temperature=args["temperature"])

    # --- arguments --------------------------------------------------------------------------
    def _settings(self, kwargs: Mapping) -> tuple[dict, GenerationConfig, bool]:
        """(the pipeline's arguments, the generation settings, whether to return timestamps)
        of a call: the model's return_timestamps holds unless the call asks for them."""
        own, generation = self._split(self._generation_arguments(kwargs))
        args = self._check(self.arguments(own))
        config = self._call_config({**self._init_generation, **generation}, args)
        stamps = bool(args["return_timestamps"]
                      or self.generation_config.extras.get("return_timestamps"))
        return args, config, stamps

    def _generation_arguments(self, kwargs: Mapping) -> dict:
        """The keyword arguments with ``generate_kwargs`` spread among them (transformers
        passes both to generate(); the direct ones win), Whisper's temperature taken out, and
        what edgeport's Whisper does not implement refused."""
        kwargs = dict(kwargs)
        extra = kwargs.pop("generate_kwargs", None) or {}
        if not isinstance(extra, Mapping):
            raise InputError(f"generate_kwargs must be a dict of generation settings, got "
                             f"{type(extra).__name__}. Note: e.g. generate_kwargs="
                             "{'language': 'en', 'task': 'transcribe'}.")
        misplaced = sorted(k for k in extra if k in self.parameters
                           and k not in (*WHISPER_ARGUMENTS, "temperature"))
        if misplaced:
            raise InputError(f"{misplaced} are arguments of the pipeline, not of generate(). "
                             "Note: pass them to the call itself, not in generate_kwargs.")
        # None leaves a setting to the model, as in transformers (and then unset, or refused)
        kwargs = {k: v for k, v in {**extra, **kwargs}.items()
                  if not (v is None and k in _NOT_IMPLEMENTED)}
        if kwargs.get("do_sample"):
            raise InputError(
                "do_sample=True does not make Whisper sample: transformers ignores it (Whisper "
                "samples at a temperature above 0, and decodes greedily or with beams at 0 or "
                "none). Note: leave do_sample out, and pass temperature=0.7 (or a list, "
                "(0.0, 0.2, ...), for the fallback) to sample."
            )
        for name, what in _NOT_IMPLEMENTED.items():
            if kwargs.get(name) is not None:
                raise InputError(f"{name} asks for {what}, which edgeport's Whisper does not "
                                 f"implement. Note: leave {name} out.")
        return kwargs

    def _check(self, args):
        stamps = args["return_timestamps"]
        if stamps == "word" and (self.bundle is None
                                 or whisper_timing.ALIGNMENT_GRAPH not in self.bundle.graphs):
            raise InputError(
                "return_timestamps='word' needs the graph of Whisper's alignment heads "
                "(their cross-attention weights time the words), and this bundle was exported "
                "without it. Note: export the checkpoint again with `edgeport export "
                "--word-timestamps` (bundle_from_checkpoint(..., word_timestamps=True)), or use "
                "return_timestamps=True for segment timestamps."
            )
        whisper_fallback.temperatures(args["temperature"])
        if stamps not in (None, False, True, "word"):
            raise InputError(
                f"return_timestamps={stamps!r} is not possible for Whisper (transformers "
                "refuses 'char' too). Note: use True for segment timestamps, 'word' for word "
                "timestamps, or leave it out."
            )
        if args["return_language"] not in (None, False, True):
            raise InputError(f"return_language must be True or False, got "
                             f"{args['return_language']!r}.")
        return _check_chunk_length(args)

    def _call_config(self, generation: Mapping, args) -> GenerationConfig:
        """The call's generation settings, with its language, task and is_multilingual among
        the custom keys, checked: what the model cannot take, or this pipeline cannot do."""
        config = self.call_config(generation)
        given = {name: args[name] for name in WHISPER_ARGUMENTS if args[name] is not None}
        if "is_multilingual" in given and "is_multilingual" not in config.extras:
            raise InputError(
                "is_multilingual cannot be set: the model's generation_config.json predates it "
                "(transformers refuses it too). Note: leave is_multilingual out."
            )
        config = GenerationConfig.from_dict({**config.to_dict(), **given},
                                            explicit=config.explicit)
        whisper.check_language_and_task(
            config, given={name: args[name] for name in ("language", "task")})
        for name, what in _NOT_IMPLEMENTED.items():
            if config.extras.get(name) is not None:
                raise InputError(
                    f"The bundle's generation_config.json sets {name}, which asks for {what}: "
                    f"edgeport's Whisper does not implement it. Note: pass {name}=None, or "
                    "remove it from generation_config.json."
                )
        if config.do_sample:
            raise InputError("The generation settings ask for sampling (do_sample), which "
                             "Whisper ignores: it samples at a temperature above 0. Note: pass "
                             "do_sample=False, and temperature=0.7 (or a list) to sample.")
        whisper_fallback.check_thresholds(config.extras)
        if config.num_return_sequences != 1:
            raise InputError(f"num_return_sequences={config.num_return_sequences}: the pipeline "
                             "gives one transcript per input. Note: leave it out.")
        return config

    # --- one signal -------------------------------------------------------------------------
    def features(self, signals, **options) -> dict[str, np.ndarray]:
        """The feature extractor's arrays, holding only the encoder graph's inputs (Whisper's
        ``input_features``: its decoder reads the encoder's output)."""
        arrays = self.feature_extractor(signals, **options)
        # by the bundle's declaration when there is one, so that any GenerationModel may run
        # the graphs (compare's PyTorch reference)
        specs = (self.bundle.graph_specs(FAMILY_GRAPHS["encoder-decoder"][0])[0]
                 if self.bundle is not None else self.model.encoder.inputs)
        names = {spec.name for spec in specs}
        return {name: arrays[name] for name in arrays if name in names}

    def _transcribe(self, signal: np.ndarray, args, config: GenerationConfig,
                    stamps: bool) -> dict:
        """transformers' preprocess, _forward and postprocess for one signal: chunks of
        ``chunk_length_s`` (each one 30 s window), else one window, or several for audio over
        30 s (features then not cut to 30 s)."""
        extractor, rate = self.feature_extractor, self.feature_extractor.sampling_rate
        hop, words = extractor.hop_length, args["return_timestamps"] == "word"
        outputs, times = [], []
        if args["chunk_length_s"]:
            for chunk, (left, right) in _chunks(signal, args, rate, self.inputs_to_logits_ratio):
                features = self.features([chunk])["input_features"]
                # the stride in seconds, divided as transformers divides it
                stride = (len(chunk) / rate, left / rate, right / rate)
                times.append([] if words else None)  # frames: the attention mask's, as there
                outputs.append((self._generate(
                    features, config, stamps, temperature=args["temperature"], times=times[-1],
                    num_frames=_mask_frames(len(chunk), extractor.n_samples, hop)), stride))
        else:
            long = len(signal) > extractor.n_samples
            features = self.features([signal], padding="longest" if long else "max_length",
                                     truncation=not long)["input_features"]
            times.append([] if words else None)
            # frames: the extractor's num_frames, or (long-form) its attention mask's
            frames = _mask_frames(len(signal), len(signal), hop) if long else len(signal) // hop
            outputs.append((self._generate(features, config, stamps,
                                           temperature=args["temperature"], times=times[-1],
                                           num_frames=frames), None))
        return whisper.transcript(
            outputs, self.tokenizer, timestamps=stamps, language=bool(args["return_language"]),
            time_precision=extractor.chunk_length / self.source_positions,
            token_times=times if words else None)

    def _generate(self, features: np.ndarray, config: GenerationConfig, stamps: bool, *,
                  temperature=None, times: list | None = None,
                  num_frames: int | None = None) -> list[int]:
        """The generated tokens of one input's log-mel features (1 x mel bins x frames), as
        transformers' Whisper ``generate()`` gives them: window after window of 30 s (one for
        short-form audio), each from the same prompt, decoded again at the next of
        ``temperature`` while it fails the fallback's thresholds (``whisper_fallback``),
        moving on past the last complete segment (``whisper.split_segments``); the windows'
        segments one after the other. ``times``: a list to extend with the time of each
        returned token (word timestamps; ``num_frames``: the input's frames of audio)."""
        extras, extractor = config.extras, self.feature_extractor
        whisper.check_extras(extras)
        window = extractor.nb_max_frames  # 3000 frames: what the encoder takes
        input_stride = window // self.source_positions  # frames per timestamp
        frames = features.shape[-1]
        timestamps = True if stamps else extras.get("return_timestamps")
        if frames > window:
            if timestamps is False:
                raise InputError(
                    f"The audio is {frames * extractor.hop_length / extractor.sampling_rate:.1f} "
                    "s long: beyond 30 s Whisper transcribes "
                    "window after window, which needs its timestamps, and the model's "
                    "generation_config.json turns them off. Note: pass return_timestamps=True, "
                    "or chunk_length_s=30 to transcribe 30 s chunks."
                )
            timestamps = True
        no_timestamps = extras.get("no_timestamps_token_id")
        if timestamps and no_timestamps is None:
            raise InputError("Timestamps need no_timestamps_token_id in the model's "
                             "generation_config.json. Note: pass return_timestamps=False.")
        vocab = self.model.vocab_size
        if timestamps and no_timestamps + 1 >= vocab:
            raise InputError(
                f"Whisper's no_timestamps_token_id={no_timestamps} leaves no room for the "
                f"timestamp tokens that follow it among the model's {vocab} tokens. Note: fix "
                "it in the bundle's generation_config.json, or pass return_timestamps=False.")
        timestamp_eos = config.eos_token_id or config.bos_token_id
        if timestamps and (not isinstance(timestamp_eos, int) or timestamp_eos < 0):
            raise InputError(
                f"Whisper's timestamp rules need one eos_token_id (or bos_token_id), got "
                f"{config.to_dict()['eos_token_id']!r:.80}. Note: fix it in the bundle's "
                "generation_config.json (Whisper's is <|endoftext|>), or pass "
                "return_timestamps=False.")
        model = _EncodedOnce(self.model)  # language detection and window 1 share the encoder
        prompt = whisper.prompt_tokens(
            config, timestamps=timestamps,
            detect_language=lambda: self._detect_language(model, features[..., :window], config))
        begin = len(prompt)
        processors = []  # Whisper's own, in transformers' order, after the config's
        if config.begin_suppress_tokens is not None:
            processors.append(SuppressTokensAtBeginLogitsProcessor(config.begin_suppress_tokens,
                                                                   begin))
        if config.suppress_tokens is not None:
            processors.append(SuppressTokensLogitsProcessor(config.suppress_tokens))
        if timestamps is True:
            processors.append(WhisperTimeStampLogitsProcessor(
                no_timestamps, begin, timestamp_eos, extras.get("max_initial_timestamp_index")))
        ready = config.replace(suppress_tokens=None, begin_suppress_tokens=None)
        timestamp_begin = (no_timestamps + 1 if no_timestamps is not None
                           else self.model.vocab_size + 1)
        thresholds = whisper_fallback.check_thresholds(extras)
        heats = whisper_fallback.temperatures(temperature)
        rng = np.random.default_rng(config.seed)  # sampling's draws, window after window
        beams = ready.num_beams
        segments, seek = [], 0
        while seek < frames:
            span = min(frames - seek, window)
            segment = np.zeros((*features.shape[:-1], window), dtype=np.float32)
            segment[..., :span] = features[..., seek:seek + span]
            feed = {"input_features": segment}
            for heat in heats:
                sample = heat is not None and heat > 0.0
                if sample:  # (transformers keeps one beam for the windows after, too)
                    beams = 1
                tried = ready.replace(
                    do_sample=sample, temperature=heat if sample else 1.0, num_beams=beams,
                    seed=int(rng.integers(2**63)) if sample else ready.seed)
                output = run(model, feed, None, tried, tokenizer=self.tokenizer,
                             max_positions=self.max_positions,
                             max_positions_key=self.max_positions_key,
                             decoder_input_ids=np.array([prompt], dtype=np.int64),
                             logits_processor=processors)
                sequence = output.sequences[0]
                again, skip = self._needs_fallback(model, feed, sequence, begin, tried,
                                                   processors, heat, thresholds)
                if not again:
                    break
            if skip:  # no speech: the window gives no text
                seek += span
                continue
            tokens = whisper.generated_tokens(sequence, begin, config.pad_token_id,
                                              config.eos_token_id)
            found, advance = whisper.split_segments(tokens, timestamp_begin, span, input_stride)
            segments += found
            if times is not None:
                count = sum(len(piece) for piece in found)
                stamps_of = self._token_times(model, feed, sequence, begin, num_frames - seek)
                # float32 plus the window's offset, as transformers adds them
                offset = np.float32(seek * 0.02 / input_stride)
                times.extend((stamps_of[begin:begin + count] + offset).tolist())
            # A window whose last pair of timestamps is at <|0.00|> would be decoded again
            # forever (in transformers too): it is done instead.
            seek += advance or span
        return np.concatenate(segments).tolist() if segments else []

    def _needs_fallback(self, model, feed, sequence: np.ndarray, begin: int,
                        tried: GenerationConfig, processors, heat, thresholds: dict
                        ) -> tuple[bool, bool]:
        """(decode the window again, skip it) for one decoded window, as transformers'
        ``_need_fallback`` decides (``whisper_fallback``). The search's scores, which the
        average log-probability needs, are computed again by feeding the chosen tokens
        step by step (the same steps as the search, on its one row)."""
        if not any(value is not None for value in thresholds.values()):
            return False, False
        kept = whisper_fallback.kept_tokens(sequence, begin, tried.pad_token_id,
                                            tried.eos_token_id)
        logprob = no_speech = None
        if thresholds["logprob_threshold"] is not None and len(kept):
            scores = self._search_scores(model, feed, np.concatenate(
                [sequence[:begin], kept]), begin, tried, processors)
            logprob = whisper_fallback.average_logprob(scores, kept, heat)
        if thresholds["no_speech_threshold"] is not None:
            no_speech = self._no_speech_probability(model, feed, int(sequence[0]),
                                                    tried.extras["no_timestamps_token_id"])
        return whisper_fallback.fallback_decision(
            tokens=kept, vocab_size=self.model.vocab_size,
            compression_threshold=thresholds["compression_ratio_threshold"], logprob=logprob,
            logprob_threshold=thresholds["logprob_threshold"], no_speech=no_speech,
            no_speech_threshold=thresholds["no_speech_threshold"])

    def _search_scores(self, model, feed, sequence: np.ndarray, begin: int,
                       tried: GenerationConfig, processors) -> np.ndarray:
        """transformers' ``scores`` of the search that chose ``sequence`` (prompt of ``begin``
        tokens, then the chosen ones): each step's logits (beam search: log-probabilities)
        after the processors and, when sampling, the warpers."""
        ready = generation_config_for_inputs(tried, input_ids_length=begin,
                                             is_encoder_decoder=True,
                                             max_position_embeddings=self.max_positions)
        process = logits_processors(ready, begin, custom=processors)
        state = model.begin(feed, None)
        rows = sequence[None, :].astype(np.int64)
        scores = []
        for step in range(begin, rows.shape[1]):
            logits, state = model.next_logits(state, rows[:, :step])
            logits = np.asarray(logits, dtype=np.float32)
            if tried.num_beams > 1:
                logits = log_softmax(logits)
            scores.append(process(rows[:, :step], logits)[0] if process else logits[0])
        return np.stack(scores)

    @staticmethod
    def _no_speech_probability(model, feed, start: int, no_timestamps: int) -> float:
        """transformers' ``WhisperNoSpeechDetection``: the probability of <|nospeech|> (the
        token before <|notimestamps|>) after <|startoftranscript|>."""
        state = model.begin(feed, None)
        logits, _ = model.next_logits(state, np.array([[start]], dtype=np.int64))
        return float(softmax(np.asarray(logits, dtype=np.float32))[0, no_timestamps - 1])

    def _token_times(self, model, feed, sequence: np.ndarray, begin: int,
                     num_frames: int | None) -> np.ndarray:
        """The time of each token of a decoded window, from the alignment heads' weights of
        the bundle's alignment graph (``whisper_timing.token_timestamps``)."""
        if self._alignment is None:
            self._alignment = self.bundle.engine(whisper_timing.ALIGNMENT_GRAPH,
                                                 self._variant())
        state = model.begin(feed, None)
        hidden = np.asarray(state.encoder["encoder_hidden_states"], dtype=np.float32)
        weights = self._alignment.run({
            "input_ids": np.asarray(sequence[None, :-1], dtype=np.int64),
            "encoder_hidden_states": hidden})[whisper_timing.ALIGNMENT_OUTPUT]
        width = self.config.get("median_filter_width", 7)
        return whisper_timing.token_timestamps(weights[0], begin, len(sequence),
                                               num_frames=num_frames, filter_width=width)

    def _variant(self) -> str:
        """The variant whose decoder this pipeline runs (its alignment graph goes with it)."""
        path = getattr(self.model.decoder, "path", None)
        for name, info in self.bundle.variants.items():
            decoder = info["files"].get("decoder_model_merged")
            if decoder and path is not None and self.bundle.file(
                    decoder, what="the decoder").resolve() == path.resolve():
                if whisper_timing.ALIGNMENT_GRAPH not in info["files"]:
                    raise InputError(
                        f"The variant {name!r} has no alignment graph, which "
                        "return_timestamps='word' needs. Note: use variant='fp32', or make "
                        "the variant from a bundle exported with --word-timestamps.")
                return name
        return "fp32"

    @staticmethod
    def _detect_language(model, features: np.ndarray, config: GenerationConfig) -> int:
        """transformers' ``detect_language``: the likeliest language token after
        <|startoftranscript|> alone, on the first 30 s."""
        table = config.extras.get("lang_to_id") or {}  # its shape: whisper.check_extras
        languages = np.array(sorted(table.values()), dtype=np.int64)
        if not len(languages):
            raise InputError("The model's lang_to_id is empty, so the language of the audio "
                             "cannot be detected. Note: pass language='en' (or another), or fix "
                             "lang_to_id in the bundle's generation_config.json.")
        start = config.decoder_start_token_id
        outside = [int(i) for i in (start, languages[-1]) if not 0 <= i < model.vocab_size]
        if outside:  # (lang_to_id's ids are at least 0: whisper.check_extras saw to that)
            raise InputError(
                f"Detecting the language needs decoder_start_token_id and the ids of lang_to_id "
                f"among the model's {model.vocab_size} tokens, but {outside[0]} is not. Note: "
                "fix them in the bundle's generation_config.json, or pass language='en' (or "
                "another).")
        state = model.begin({"input_features": features}, None)
        logits, _ = model.next_logits(state, np.full((len(features), 1), start, dtype=np.int64))
        return int(languages[np.argmax(logits[0, languages])])


class _EncodedOnce:
    """A generation model that keeps the state of the last encoder feed it was begun with, and
    gives it back when begun again on the same features: transformers' Whisper ``generate()``
    encodes the first 30 s once for language detection and decoding, and so does this."""

    def __init__(self, model):
        self._model, self._last = model, None

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def begin(self, feed, attention_mask):
        features = (feed.get("input_features") if isinstance(feed, Mapping)
                    and attention_mask is None else None)
        if (features is not None and self._last is not None
                and np.array_equal(self._last[0], features)):
            return self._last[1]  # states are never changed in place: sharing one is safe
        state = self._model.begin(feed, attention_mask)
        if features is not None:
            self._last = (np.array(features), state)
        return state


def _check_chunk_length(args):
    value = args["chunk_length_s"]
    if not isinstance(value, Real) or isinstance(value, bool) or value < 0:
        raise InputError(f"chunk_length_s must be a number of seconds >= 0, got {value!r}.")
    return args


def _chunks(signal: np.ndarray, args, rate: int, align: int):
    """(chunk, (left stride, right stride)) in samples: the whole signal, or transformers'
    chunk_iter for chunk_length_s > 0 (lengths aligned to ``align`` samples, the logits frame
    of a CTC model)."""
    chunk_s = args["chunk_length_s"]
    if not chunk_s:
        yield signal, (0, 0)
        return
    stride_s = args["stride_length_s"]
    if stride_s is None:
        stride_s = chunk_s / 6
    if isinstance(stride_s, Real):
        stride_s = [stride_s, stride_s]
    chunk_len = int(round(chunk_s * rate / align) * align)
    left = int(round(stride_s[0] * rate / align) * align)
    right = int(round(stride_s[1] * rate / align) * align)
    if chunk_len < left + right:
        raise InputError(
            f"chunk_length_s={chunk_s} is shorter than its strides {list(stride_s)}. Note: "
            "the chunk must be longer than stride_length_s on both sides together."
        )
    if chunk_len - left - right <= 0:
        raise InputError("chunk_length_s leaves nothing between the strides. Note: make "
                         "it longer than both strides together.")
    step = chunk_len - left - right
    for start in range(0, len(signal), step):
        chunk = signal[start:start + chunk_len]
        last = start + chunk_len >= len(signal)
        stride = (0 if start == 0 else left, 0 if last else right)
        if len(chunk) > stride[0]:
            yield chunk, stride
        if last:
            return


def _mask_frames(samples: int, padded: int, hop: int) -> int:
    """The feature frames with audio, as the sum of Whisper's extractor's attention mask: the
    sample mask (``samples`` of ``padded``) taken every ``hop`` samples, its last entry dropped
    when ``padded`` is not a multiple of ``hop``."""
    count = len(range(0, padded, hop)) - (padded % hop != 0)
    return min(count, -(-samples // hop))


def _rescale_stride(samples: int, left: int, right: int, ratio: float) -> tuple[int, int, int]:
    """transformers' rescale_stride: (frames, left, right) of a chunk's stride in samples."""
    token_n = int(round(samples * ratio))
    return token_n, int(round(left / samples * token_n)), int(round(right / samples * token_n))
