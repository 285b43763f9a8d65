"""pipeline_from_bundle(..., engines={graph: Engine}): the graphs of a generative bundle run by
engines given in place of the bundle's (what a serving backend does: serving/native_model.py's
BLS engines), with the same results."""

from __future__ import annotations

import pytest

from runtime.backends.engine import OrtEngine
from runtime.bundle import Bundle
from runtime.errors import InputError
from runtime.pipeline import pipeline_from_bundle


class Counting:
    """An Engine over another that counts its runs."""

    def __init__(self, engine):
        self.engine, self.runs = engine, 0
        self.inputs, self.outputs = engine.inputs, engine.outputs

    def run(self, feed):
        self.runs += 1
        return self.engine.run(feed)


@pytest.mark.parametrize("key, graphs, prompt", [
    (("gpt2", "text-generation"), ["model"], "Hello there"),
    (("bart", "text2text-generation"), ["encoder_model", "decoder_model_merged"], "hello world"),
])
def test_given_engines_run_the_graphs(tiny_bundle, key, graphs, prompt):
    bundle = Bundle.load(tiny_bundle(*key))
    engines = {graph: Counting(OrtEngine(bundle.graph_path(graph, "fp32"))) for graph in graphs}
    given = pipeline_from_bundle(bundle, engines=engines)
    settings = {"do_sample": False, "num_beams": 1, "max_new_tokens": 5}
    assert given(prompt, **settings) == pipeline_from_bundle(bundle)(prompt, **settings)
    assert all(engine.runs > 0 for engine in engines.values())
    # only some graphs given: the others are the bundle's own
    if len(graphs) > 1:
        one = {graphs[0]: Counting(engines[graphs[0]].engine)}
        assert pipeline_from_bundle(bundle, engines=one)(prompt, **settings) == given(
            prompt, **settings)
        assert one[graphs[0]].runs == 1  # the encoder, once


def test_engines_name_graphs_the_model_runs(tiny_bundle):
    bundle = Bundle.load(tiny_bundle("gpt2", "text-generation"))
    with pytest.raises(InputError, match="does not run"):
        pipeline_from_bundle(bundle, engines={"encoder_model": object()})
    with pytest.raises(InputError, match="engines="):
        pipeline_from_bundle(bundle, engine=object())
    text = Bundle.load(tiny_bundle("bert", "text-classification"))
    with pytest.raises(InputError, match="engine= instead"):
        pipeline_from_bundle(text, engines={"model": object()})
