"""Audio: user audio to mono float32 at the model's rate (``loading``), the Wav2Vec2 and Whisper
feature extractors from preprocessor_config.json (``features``), CTC decoding from vocab.json
(``ctc``), and Whisper's prompt, segments and result assembly (``whisper``).

May import ``runtime.errors``, ``runtime.files``, ``runtime.preprocessor_config``,
``runtime.text``, ``runtime.generation.config`` (Whisper's decoding settings) and the libraries
(numpy, soundfile, soxr); never the bundle, the backends, the tasks or anything above them.
"""
