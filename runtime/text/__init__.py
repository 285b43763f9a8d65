"""Text: the fast tokenizer read from a bundle's tokenizer.json and tokenizer_config.json
(``tokenizer``), chat templates that make messages into a prompt, rendered in a jinja2 sandbox
(``chat``), sentence-transformers pooling from modules.json (``pooling``), and the language codes
of multilingual translation tokenizers, mBART's (``languages``).

May import ``runtime.errors``, ``runtime.files`` and the libraries (numpy, tokenizers, jinja2);
never the bundle, the backends, the tasks or anything above them.
"""
