"""Text: the fast tokenizer read from a bundle's tokenizer.json and tokenizer_config.json
(``tokenizer``), and sentence-transformers pooling from modules.json (``pooling``).

May import ``runtime.errors``, ``runtime.files`` and the libraries (numpy, tokenizers); never the
bundle, the backends, the tasks or anything above them.
"""
