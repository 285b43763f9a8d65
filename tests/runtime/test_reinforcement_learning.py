"""reinforcement-learning: a Decision Transformer bundle acting in an episode gives, step by
step, the action that PyTorch's model gives through ``get_action`` from Hugging Face's Decision
Transformer tutorial (transformers has no pipeline for the task: this is the reference its model
cards point to). The episode runs past the 20-step context, so truncation and padding are
both exercised."""

from __future__ import annotations

import numpy as np
import pytest
from trajectory_checkpoints import TINY_TRAJECTORY

from exporter.architectures import ARCHITECTURES
from runtime import Bundle, pipeline
from runtime.errors import InputError

TASK = "reinforcement-learning"
ARCHITECTURES_UNDER_TEST = [model_type for model_type, task in TINY_TRAJECTORY if task == TASK]
STATE_DIM, ACT_DIM = 11, 3


def get_action(model, states, actions, returns_to_go, timesteps):
    """The tutorial's get_action (huggingface.co/blog/train-decision-transformers), verbatim in
    what it computes: the last max_length steps, left-padded with zeros and masked."""
    import torch

    states = states.reshape(1, -1, model.config.state_dim)
    actions = actions.reshape(1, -1, model.config.act_dim)
    returns_to_go = returns_to_go.reshape(1, -1, 1)
    timesteps = timesteps.reshape(1, -1)
    states = states[:, -model.config.max_length:]
    actions = actions[:, -model.config.max_length:]
    returns_to_go = returns_to_go[:, -model.config.max_length:]
    timesteps = timesteps[:, -model.config.max_length:]
    padding = model.config.max_length - states.shape[1]
    attention_mask = torch.cat([torch.zeros(padding), torch.ones(states.shape[1])])
    attention_mask = attention_mask.to(dtype=torch.long).reshape(1, -1)
    states = torch.cat([torch.zeros((1, padding, model.config.state_dim)), states], dim=1).float()
    actions = torch.cat([torch.zeros((1, padding, model.config.act_dim)), actions], dim=1).float()
    returns_to_go = torch.cat([torch.zeros((1, padding, 1)), returns_to_go], dim=1).float()
    timesteps = torch.cat([torch.zeros((1, padding), dtype=torch.long), timesteps], dim=1)
    with torch.no_grad():
        _, action_preds, _ = model(states=states, actions=actions, returns_to_go=returns_to_go,
                                   timesteps=timesteps, attention_mask=attention_mask,
                                   return_dict=False)
    return action_preds[0, -1].numpy()


def _episode_states(steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((steps, STATE_DIM)).astype(np.float32) * 2


@pytest.fixture(scope="module")
def torch_model(tiny_checkpoint):
    import transformers

    return transformers.DecisionTransformerModel.from_pretrained(
        str(tiny_checkpoint("decision_transformer", TASK))).eval()


@pytest.mark.parametrize("model_type", ARCHITECTURES_UNDER_TEST)
def test_an_episode_acts_as_get_action_does(model_type, runtime_pipeline, torch_model):
    """30 steps, each action the runtime's, fed back as the tutorial's evaluation loop does:
    (states - mean) / std, a zero action row appended for the action asked for, returns-to-go
    lowered by each reward."""
    import torch

    act = runtime_pipeline(model_type, TASK)
    raw = _episode_states(30)
    mean, std = raw.mean(0), raw.std(0) + 0.5
    actions = np.zeros((0, ACT_DIM), np.float32)
    returns = [3.6]
    for step in range(30):
        states = raw[:step + 1]
        timesteps = np.arange(step + 1)
        placeholder = np.concatenate([actions, np.zeros((1, ACT_DIM), np.float32)])
        expected = get_action(torch_model, torch.from_numpy((states - mean) / std),
                              torch.from_numpy(placeholder),
                              torch.tensor(returns, dtype=torch.float32),
                              torch.from_numpy(timesteps))
        # the actions taken so far (the zero row is appended), normalization by the pipeline
        got = act(states=states, actions=actions, returns_to_go=returns, timesteps=timesteps,
                  state_mean=mean, state_std=std)["action"]
        assert got.shape == (ACT_DIM,) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=2e-5, err_msg=f"step {step}")
        actions = np.concatenate([actions, got[None]])
        returns.append(returns[-1] - float(np.abs(got).sum()) / 10)
    assert len(actions) > 20  # past the context: the history was truncated


def test_a_batch_of_trajectories_is_each_one_alone(runtime_pipeline):
    act = runtime_pipeline("decision_transformer", TASK)
    trajectories = [
        {"states": _episode_states(n, seed=n), "returns_to_go": np.linspace(3, 1, n),
         "actions": np.full((n, ACT_DIM), 0.1, np.float32), "timesteps": np.arange(n) + 5}
        for n in (1, 7, 26)]
    batch = act(trajectories)
    assert isinstance(batch, list) and len(batch) == 3
    for trajectory, result in zip(trajectories, batch):
        np.testing.assert_allclose(result["action"], act(trajectory)["action"], atol=1e-6)


def test_the_bundle_says_what_it_is(tiny_bundle):
    bundle = Bundle.load(tiny_bundle("decision_transformer", TASK))
    assert (bundle.task, bundle.manifest["family"], bundle.manifest["modality"]) == (
        TASK, "trajectory", "trajectory")
    assert ARCHITECTURES["decision_transformer"].tasks == (TASK,)
    assert bundle.manifest["validation"]["passed"]


@pytest.mark.parametrize(("trajectory", "match"), [
    ({"states": np.zeros((4, STATE_DIM + 1)), "returns_to_go": np.ones(4)},
     r"states has shape \(4, 12\); the model takes \(T, 11\)"),
    ({"states": np.zeros((4, STATE_DIM)), "returns_to_go": np.ones(3)},
     r"returns_to_go has shape \(3, 1\); the model takes \(4, 1\)"),
    ({"states": np.zeros((4, STATE_DIM)), "returns_to_go": np.ones(4),
      "actions": np.zeros((1, ACT_DIM))}, "actions holds 1 steps and states 4"),
    ({"states": np.zeros((4, STATE_DIM)), "returns_to_go": np.ones(4),
      "actions": np.zeros((3, ACT_DIM)), "timesteps": [0, 1, 2, 200]},
     r"timesteps run from 0 to 200.*0 to 199.*max_ep_len"),
    ({"states": np.zeros((4, STATE_DIM)), "returns_to_go": np.ones(4),
      "actions": np.zeros((3, ACT_DIM)), "timesteps": [0.0, 1.0, 2.0, 3.0]},
     "timesteps must be 4 integers"),
    ({"states": np.full((2, STATE_DIM), np.nan), "returns_to_go": np.ones(2)},
     "states holds NaN"),
    ({"states": [["a"] * STATE_DIM], "returns_to_go": [1.0]}, "states must be an array"),
    ({"returns_to_go": np.ones(2)}, "needs states"),
    ({"states": np.zeros((3, STATE_DIM)), "returns_to_go": np.ones(3)},
     r"3 steps needs its actions: the 2 taken so far, \(2, 3\)"),
    ({"states": np.zeros((1, STATE_DIM)), "returns_to_go": [1.0], "rewards": [0.0]},
     "not 'rewards'"),
])
def test_bad_trajectories_are_clear_errors(trajectory, match, runtime_pipeline):
    act = runtime_pipeline("decision_transformer", TASK)
    with pytest.raises(InputError, match=match):
        act(trajectory)


def test_bad_calls_are_clear_errors(runtime_pipeline):
    act = runtime_pipeline("decision_transformer", TASK)
    one = {"states": np.zeros((1, STATE_DIM)), "returns_to_go": [1.0]}
    with pytest.raises(InputError, match="not both"):
        act(one, states=np.zeros((1, STATE_DIM)))
    with pytest.raises(InputError, match="a list of them"):
        act("walk forward")
    with pytest.raises(InputError, match="state_std must be positive"):
        act(one, state_std=np.zeros(STATE_DIM))
    with pytest.raises(InputError, match=r"state_mean has shape \(3,\)"):
        act(one, state_mean=np.zeros(3))
    with pytest.raises(InputError, match="takes no argument 'top_k'"):
        act(one, top_k=2)


def test_edgeport_run_takes_trajectories_in_json(tiny_bundle, tmp_path, capsys):
    import json

    from runtime.cli import main

    bundle = tiny_bundle("decision_transformer", TASK)
    trajectory = {"states": _episode_states(3).tolist(), "returns_to_go": [3.6, 3.4, 3.1],
                  "actions": [[0.1, 0.2, 0.3], [0.0, -0.5, 0.2]]}
    (tmp_path / "episode.json").write_text(json.dumps(trajectory))
    assert main(["run", str(bundle), json.dumps(trajectory), str(tmp_path / "episode.json"),
                 "--json"]) == 0
    inline, from_file = json.loads(capsys.readouterr().out)
    action = pipeline(model=str(bundle))(trajectory)["action"]  # the pipeline's, as a list
    assert inline == from_file == {"action": action.tolist()}
    assert main(["run", str(bundle), str(tmp_path / "gone.json")]) == 1
    assert "trajectory file is missing" in capsys.readouterr().err
