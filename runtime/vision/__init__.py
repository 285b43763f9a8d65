"""Vision: user images to RGB (``images``), image processors configured from
preprocessor_config.json (``processors``), and transformers' post_process_* in numpy
(``postprocess``: boxes, segments, depth).

May import ``runtime.errors``, ``runtime.files``, ``runtime.preprocessor_config`` and the
libraries (numpy, Pillow); never the bundle, the backends, the tasks or anything above them.
"""
