"""What runs a bundle's graphs: the Engine protocol, ONNX Runtime's engine and the table of
backends (``engine``), a merged decoder's If branches as graphs of their own (``merged``),
TensorRT (``tensorrt``: profiles, plans, the builder, TrtEngine) and OpenVINO (``openvino``:
device and precision facts, the compiled-model cache, OvEngine).

``engine`` and ``merged`` lie below the bundle and import only ``runtime.errors``,
``runtime.files`` and the libraries (numpy, onnxruntime; onnx lazily). ``tensorrt`` and
``openvino`` are built on the bundle, above it, and are reached through ``engine.BACKENDS`` by
name, never imported by the layers below. Importing this package imports none of them.
"""
