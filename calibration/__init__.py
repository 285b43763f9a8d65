"""Calibration data, quantization recipes and accuracy comparison: torch-free, so they run on
the device too (``pip install 'edgeport[quantize]'``).

>>> from calibration import variant_from_bundle, compare_variants     # doctest: +SKIP
>>> variant_from_bundle("bundle", "dynamic-int8")                      # doctest: +SKIP
'int8'
>>> compare_variants("bundle", "lines.txt")["variants"]["int8"]["task"]["value"]  # doctest: +SKIP
0.99
>>> compare_variants("detr", "photos/")["variants"]["int8"]["task"]["metric"]  # doctest: +SKIP
'map50'
>>> variant_from_bundle("gpt2-bundle", "int4")                          # doctest: +SKIP
'q4'
>>> compare_variants("gpt2-bundle")["variants"]["q4"]["task"]["metric"]  # doctest: +SKIP
'token_agreement'
>>> perplexity_from_text("llama-bundle", text)["variants"]["q4"]["ratio_vs_fp32"]  # doctest: +SKIP
1.0034

Importing this package loads neither onnx nor the quantizers; the functions do, when called.
"""

from .budget import variant_within_budget
from .compare import compare_variants
from .data import dim_ranges, feeds_from_path, load_samples
from .perplexity import perplexity_from_text
from .quantize import variant_from_bundle
from .recipes import RECIPES
from .report import write_reports

__all__ = [
    "RECIPES", "compare_variants", "dim_ranges", "feeds_from_path", "load_samples",
    "perplexity_from_text", "variant_from_bundle", "variant_within_budget", "write_reports",
]
