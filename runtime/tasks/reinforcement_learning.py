"""The reinforcement-learning task: a Decision Transformer's next action from the trajectory so
far. transformers has no pipeline for it; this is the ``get_action`` of its model cards and of
Hugging Face's Decision Transformer tutorial, in numpy: the last ``max_length`` steps of the
trajectory (config.json's, 20 by default), left-padded with zeros and masked out when shorter,
and the action predicted at the last step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import BundleError, InputError
from ..files import parse_json
from .base import Pipeline, config_count

_TRAJECTORY = ("states", "actions", "returns_to_go", "timesteps")
# The most steps one trajectory may hold; get_action keeps the last max_length of them anyway.
_MAX_STEPS = 1 << 20


class ReinforcementLearningPipeline(Pipeline):
    """``{"action": float32 array (act_dim,)}``: the action to take after the trajectory's last
    state; a list of such dicts for a list of trajectories (run as one batch).

    A trajectory is a dict, or keyword arguments: ``states`` (T, state_dim), ``returns_to_go``
    (T,) or (T, 1), ``actions`` (T, act_dim) with the last row a placeholder for the action
    asked for (zeros, as the tutorial appends them), or (T - 1, act_dim), the actions taken so
    far, which get the zero row appended; ``timesteps`` (T,) integers, by default 0 .. T-1 (the
    whole episode given). ``state_mean`` and ``state_std`` (state_dim,) normalize the states
    as the model was trained on them.

    >>> act = pipeline("reinforcement-learning", model="dt-hopper-bundle")    # doctest: +SKIP
    >>> act(states=states, actions=actions, returns_to_go=rtg)["action"]      # doctest: +SKIP
    array([ 0.12, -0.80,  0.33], dtype=float32)
    """

    task = "reinforcement-learning"
    preprocessors = ()
    parameters = {"state_mean": None, "state_std": None}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        dims = {key: config_count(self.config, key)
                for key in ("state_dim", "act_dim", "max_ep_len")}
        missing = [key for key, value in dims.items() if value is None]
        if missing:
            raise BundleError(f"config.json has no {', '.join(missing)}: a Decision Transformer "
                              "states them. Note: export the checkpoint again.")
        self.state_dim, self.act_dim, self.max_ep_len = (
            dims["state_dim"], dims["act_dim"], dims["max_ep_len"])
        self.context = config_count(self.config, "max_length") or 20
        mask = next((spec for spec in self.engine.inputs if spec.name == "attention_mask"), None)
        self.mask_dtype = mask.dtype if mask is not None else np.float32

    def __call__(self, inputs: Mapping | Sequence[Mapping] | None = None, **kwargs):
        trajectory = {key: kwargs.pop(key) for key in _TRAJECTORY if key in kwargs}
        arguments = self.arguments(kwargs)
        if inputs is None:
            trajectories, single = [trajectory], True
        elif trajectory:
            raise InputError("Pass a trajectory as keyword arguments or as the first argument, "
                             "not both.")
        elif isinstance(inputs, Mapping):
            trajectories, single = [inputs], True
        elif isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)) and inputs \
                and all(isinstance(item, Mapping) for item in inputs):
            trajectories, single = list(inputs), False
        else:
            raise InputError(
                f"Expected a trajectory (a dict of states, actions, returns_to_go and "
                f"timesteps) or a list of them, got {type(inputs).__name__}. Note: "
                "pipe(states=..., actions=..., returns_to_go=...) also works.")
        mean, std = self._normalization(arguments)
        steps = [self._steps(t, mean, std) for t in trajectories]
        feed = {name: np.stack([s[name] for s in steps]) for name in steps[0]}
        feed = {name: value for name, value in feed.items() if name in self.input_names}
        actions = self.engine.run(feed)["action_preds"][:, -1, :].astype(np.float32)
        results = [{"action": action} for action in actions]
        return results[0] if single else results

    # --- inputs -----------------------------------------------------------------------------
    def _normalization(self, arguments: dict[str, Any]):
        mean = std = None
        if arguments["state_mean"] is not None:
            mean = _array(arguments["state_mean"], "state_mean", (self.state_dim,))
        if arguments["state_std"] is not None:
            std = _array(arguments["state_std"], "state_std", (self.state_dim,))
            if not (std > 0).all():
                raise InputError("state_std must be positive: the states are divided by it.")
        return mean, std

    def _steps(self, trajectory: Mapping, mean, std) -> dict[str, np.ndarray]:
        """One trajectory's last ``context`` steps, left-padded to ``context``, as the graph's
        inputs (without the batch axis)."""
        unknown = set(trajectory) - set(_TRAJECTORY)
        if unknown:
            raise InputError(f"A trajectory holds {', '.join(_TRAJECTORY)}; not "
                             f"{sorted(unknown)[0]!r:.60}.")
        for key in ("states", "returns_to_go"):
            if trajectory.get(key) is None:
                raise InputError(f"A trajectory needs {key}. Note: pass states (T, "
                                 f"{self.state_dim}) and returns_to_go (T,).")
        states = _array(trajectory["states"], "states", (None, self.state_dim))
        length = len(states)
        if not 1 <= length <= _MAX_STEPS:
            raise InputError(f"states holds {length} steps; a trajectory has 1 to "
                             f"{_MAX_STEPS}.")
        returns = _array(trajectory["returns_to_go"], "returns_to_go", (length, 1))
        actions = trajectory.get("actions")
        if actions is None and length > 1:
            raise InputError(f"A trajectory of {length} steps needs its actions: the "
                             f"{length - 1} taken so far, ({length - 1}, {self.act_dim}).")
        actions = (np.zeros((0, self.act_dim), np.float32) if actions is None
                   else _array(actions, "actions", (None, self.act_dim)))
        if len(actions) == length - 1:  # the actions taken: the one asked for is a zero row
            actions = np.concatenate([actions, np.zeros((1, self.act_dim), np.float32)])
        if len(actions) != length:
            raise InputError(
                f"actions holds {len(actions)} steps and states {length}: actions has one row "
                "per state (the last a placeholder), or one fewer (the actions taken).")
        timesteps = trajectory.get("timesteps")
        timesteps = np.arange(length) if timesteps is None else _timesteps(timesteps, length)
        if timesteps.size and not 0 <= timesteps.min() <= timesteps.max() < self.max_ep_len:
            raise InputError(
                f"timesteps run from {timesteps.min()} to {timesteps.max()}; the model embeds "
                f"0 to {self.max_ep_len - 1} (config.json's max_ep_len). Note: pass each "
                "step's index in its episode.")
        if mean is not None:
            states = states - mean
        if std is not None:
            states = states / std
        keep = min(length, self.context)
        pad = self.context - keep

        def padded(values: np.ndarray, dtype) -> np.ndarray:
            values = values[length - keep:].astype(dtype)
            return np.concatenate([np.zeros((pad, *values.shape[1:]), dtype), values])

        return {"states": padded(states, np.float32), "actions": padded(actions, np.float32),
                "returns_to_go": padded(returns, np.float32),
                "timesteps": padded(timesteps, np.int64),
                "attention_mask": np.concatenate([np.zeros(pad), np.ones(keep)]).astype(
                    self.mask_dtype)}


def trajectory_from_json(text: str, what: str = "the trajectory") -> dict:
    """A trajectory from its JSON text (strict JSON, an object of lists), as `edgeport run` and
    the Triton contract take it; the pipeline checks its arrays.

    >>> trajectory_from_json('{"states": [[0.5, 1.0]], "returns_to_go": [1.0]}')["states"]
    [[0.5, 1.0]]
    """
    return trajectory_object(parse_json(text, what, error=InputError))


def trajectory_object(value) -> dict:
    """``value`` (parsed JSON) when it is an object; an InputError saying the form otherwise."""
    if not isinstance(value, dict):
        raise InputError("A trajectory is a JSON object: {\"states\": [[...], ...], "
                         "\"actions\": [[...], ...], \"returns_to_go\": [...]}.")
    return value


def _array(value, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """``value`` as a finite float32 array of ``shape`` (None: any length); (T,) is taken for
    (T, 1) and a single row for (1, D)."""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an array of numbers, not "
                         f"{type(value).__name__}.") from None
    if len(shape) == 2 and shape[1] == 1 and array.ndim == 1:
        array = array[:, None]
    elif len(shape) == 2 and array.ndim == 1 and shape[0] is None:
        array = array[None]
    if array.ndim != len(shape) or any(want is not None and got != want
                                       for got, want in zip(array.shape, shape)):
        wanted = ", ".join("T" if d is None else str(d) for d in shape)
        raise InputError(f"{name} has shape {array.shape}; the model takes ({wanted}).")
    if not np.isfinite(array).all():
        raise InputError(f"{name} holds NaN or infinite values.")
    return array


def _timesteps(value, length: int) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.shape != (length,) or not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"timesteps must be {length} integers, one per state; got "
                         f"{array.dtype} {array.shape}.")
    return array.astype(np.int64)
