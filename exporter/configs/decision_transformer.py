"""Decision Transformer: optimum's export config, with the export-time patch that makes its
graph run at all.

``DecisionTransformerModel.forward`` interleaves each step's return-to-go, state and action
embeddings into one sequence three times as long (``reshape(batch, 3 * T, hidden)``), runs GPT-2
on it, and takes the three streams apart again with ``reshape(batch, T, 3, hidden)``. Traced as
it is, the second reshape reads its ``T`` from the interleaved sequence, so the graph asks for
``(batch, 3T, 3, hidden)`` and fails at every length, the traced one included (a Reshape error).
``TRACEABLE_FORWARD`` computes the same thing with the sequence axes inferred (``-1``), and is
applied only while the graph is traced: validation compares the graph with the model's own
forward.

The graph takes ``states`` (batch, T, state_dim), ``actions`` (batch, T, act_dim),
``returns_to_go`` (batch, T, 1), ``timesteps`` (batch, T) and a float ``attention_mask``
(batch, T); it gives ``state_preds``, ``action_preds``, ``return_preds`` (batch, T, ...) and
``last_hidden_state`` (batch, 3T, hidden). ``rewards``, which the model takes and ignores, is
not an input.
"""

from __future__ import annotations

import torch
from optimum.exporters.onnx.model_configs import DecisionTransformerOnnxConfig
from transformers.models.decision_transformer import modeling_decision_transformer as dt

from .patching import ExportPatch

TASKS = ("reinforcement-learning",)


def _forward(self, states=None, actions=None, rewards=None, returns_to_go=None, timesteps=None,
             attention_mask=None, output_hidden_states=None, output_attentions=None,
             return_dict=None):
    """DecisionTransformerModel.forward with the sequence axes of its reshapes inferred."""
    batch_size, hidden = states.shape[0], self.hidden_size
    if attention_mask is None:
        attention_mask = torch.ones(states.shape[:2], dtype=torch.long)
    time = self.embed_timestep(timesteps)
    # (R_1, s_1, a_1, R_2, s_2, a_2, ...): stacking on axis 2 is the original's stack on axis 1
    # and permute
    stacked = torch.stack((self.embed_return(returns_to_go) + time,
                           self.embed_state(states) + time,
                           self.embed_action(actions) + time), dim=2)
    stacked = self.embed_ln(stacked.reshape(batch_size, -1, hidden))
    mask = torch.stack((attention_mask,) * 3, dim=2).reshape(batch_size, -1)
    outputs = self.encoder(inputs_embeds=stacked, attention_mask=mask,
                           position_ids=torch.zeros_like(mask, dtype=torch.long),
                           output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, return_dict=True)
    x = outputs.last_hidden_state.reshape(batch_size, -1, 3, hidden)
    return dt.DecisionTransformerOutput(
        last_hidden_state=outputs.last_hidden_state,
        state_preds=self.predict_state(x[:, :, 2]),
        action_preds=self.predict_action(x[:, :, 1]),
        return_preds=self.predict_return(x[:, :, 2]),
        hidden_states=outputs.hidden_states,
        attentions=outputs.attentions,
    )


TRACEABLE_FORWARD = ExportPatch("decision_transformer_traceable_forward",
                                dt.DecisionTransformerModel, "forward", _forward)
PATCHES = (TRACEABLE_FORWARD,)

__all__ = ["PATCHES", "TASKS", "DecisionTransformerOnnxConfig"]
