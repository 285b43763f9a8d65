"""What an Android, iOS or web app embeds: `edgeport mobile BUNDLE -o OUT` (``mobile.cli``).

From one variant of a bundle it writes ONNX Runtime's mobile format (``model.ort``) with the
operator list a reduced build needs, a report of what each mobile execution provider (NNAPI,
Core ML, XNNPACK) can take (``mobile.report``), end-to-end graphs with the pre- and
postprocessing inside (``mobile.e2e``: onnxruntime-extensions' tokenizers and image decoding, so
an app passes raw strings or encoded images), and example code for Kotlin, Swift and JavaScript.

Torch-free, like the runtime: it may import ``runtime`` (bundles, files, errors, the settings of
tokenizers and processors), onnx, onnxruntime and onnxruntime-extensions (the ``mobile`` extra);
never torch, transformers, optimum, ``exporter`` or ``calibration``.
"""
