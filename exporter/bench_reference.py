"""The other side of `edgeport bench --against transformers`: ``transformers.pipeline`` with
PyTorch on the checkpoint a bundle was exported from, timed in the same stages as the runtime.

It lives beside the exporter because it imports torch and transformers (the export extra); the
runtime's `edgeport bench` loads it by name, only with ``--against``. The stages come from hooks
on transformers' own Pipeline: ``_forward`` marks inference (preprocess before its first call,
postprocess after its last, as the runtime's engine runs mark them), and forward hooks on the
model (and on an encoder-decoder model's encoder) give the time inside the model, the first
token and the tokens generated.

>>> backend = reference_from_bundle(Bundle.load("bundle"), "text-classification")  # doctest: +SKIP
>>> backend("What a day!")                                                       # doctest: +SKIP
[{'label': 'positive', 'score': 0.61}]
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import transformers

from runtime.bundle import Bundle
from runtime.cli.timing import ColdStart, StageClock
from runtime.errors import InputError

# The checkpoint files that hold weights: what "model size" counts on this side.
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


class TransformersBackend:
    """``transformers.pipeline(task, model=checkpoint)`` on PyTorch, its stages noted on a
    StageClock. ``generates``: whether the model's forward calls are decoder steps (their ends
    give the time to the first token)."""

    kind = "transformers"
    name = "transformers"
    takes_batch_size = True  # every transformers pipeline batches a list with batch_size

    def __init__(self, checkpoint: Path, task: str, *, generates: bool,
                 threads: int | None = None, device: str = "cpu"):
        transformers.logging.set_verbosity_error()
        if threads:
            torch.set_num_threads(threads)
        policy = POLICIES.get(task)  # a task transformers has no pipeline for
        factory = (f"{policy.__module__}.{policy.__qualname__}" if policy
                   else "transformers.pipeline")
        try:
            self.pipe = (policy or transformers.pipeline)(task=task, model=str(checkpoint),
                                                          device=device)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
            first = (str(exc).strip().splitlines() or [repr(exc)])[0][:300]
            raise InputError(
                f"transformers could not make a {task} pipeline of {checkpoint}: {first}. "
                "Note: bench without --against, or pass --task with a task transformers knows "
                "for this model."
            ) from None
        self.takes_batch_size = policy is None  # a policy batches a list as it is
        attributes = {}
        tokenizer = self.pipe.tokenizer
        if generates and tokenizer is not None and tokenizer.pad_token_id is None:
            # GPT-2 has no pad token, and a batch of prompts needs one (transformers' advice)
            attributes["tokenizer.pad_token_id"] = self.pipe.model.config.eos_token_id
            tokenizer.pad_token_id = attributes["tokenizer.pad_token_id"]
        self.clock = StageClock()
        self._active: list[float] = []  # start times of the hooked forwards under way
        self._mark_stages(generates)
        self.size_bytes = sum(path.stat().st_size for pattern in WEIGHT_PATTERNS
                              for path in checkpoint.glob(pattern))
        self.versions = {"transformers": transformers.__version__, "torch": torch.__version__}
        env = {"TRANSFORMERS_VERBOSITY": "error"}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads at start-up
        self.cold_start = ColdStart(imports=["torch", "transformers",
                                             factory.rpartition(".")[0]],
                                    factory=factory,
                                    kwargs={"task": task, "model": str(checkpoint),
                                            "device": device},
                                    attributes=attributes, env=env)

    def __call__(self, *args, **kwargs):
        return self.pipe(*args, **kwargs)

    def _mark_stages(self, generates: bool) -> None:
        forward = self.pipe._forward  # an instance attribute shadows the method

        def timed_forward(*args, **kwargs):
            start = time.perf_counter()
            try:
                return forward(*args, **kwargs)
            finally:
                self.clock.spans.append((start, time.perf_counter()))

        self.pipe._forward = timed_forward
        model = self.pipe.model
        self._hook(model, "decoder" if generates else "model")
        if generates and getattr(model.config, "is_encoder_decoder", False):
            self._hook(model.get_encoder(), "encoder")  # generate() runs it on its own

    def _hook(self, module, kind: str) -> None:
        """Note each outermost forward of ``module`` on the clock, with the rows of its token
        ids. Only the outermost: Whisper's language detection runs the whole model, encoder
        inside, and the encoder's time must not count twice."""

        def before(_module, args, kwargs):
            self._active.append(time.perf_counter())

        def after(_module, args, kwargs, _output):
            start = self._active.pop()
            if self._active:  # inside another hooked forward, which counts it
                return
            ids = next((kwargs[name] for name in ("decoder_input_ids", "input_ids")
                        if kwargs.get(name) is not None), args[0] if args else None)
            rows = int(ids.shape[0]) if ids is not None else 0
            self.clock.runs.append((kind, start, time.perf_counter(), rows))

        module.register_forward_pre_hook(before, with_kwargs=True)
        module.register_forward_hook(after, with_kwargs=True)


class DecisionTransformerPolicy:
    """PyTorch's side of a reinforcement-learning bundle, a task transformers has no pipeline
    for: Hugging Face's tutorial's ``get_action`` on DecisionTransformerModel (the last
    ``max_length`` steps, left-padded with zeros and masked), called like the runtime's pipeline:
    a trajectory dict, or a list of them run as one batch."""

    tokenizer = None

    def __init__(self, task: str, model: str, device: str = "cpu"):
        self.model = transformers.DecisionTransformerModel.from_pretrained(model).to(device)
        self.model.eval()
        self.device = device

    def __call__(self, inputs):
        single = isinstance(inputs, dict)
        return self._forward([inputs] if single else list(inputs))[0 if single else slice(None)]

    def _forward(self, trajectories: list[dict]) -> list[dict]:
        config = self.model.config
        context = config.max_length

        def padded(values, steps: int, width: int = 0, dtype=torch.float32):
            values = torch.as_tensor(values[-steps:], dtype=dtype)
            values = values.reshape(steps, width) if width else values
            pad = torch.zeros((context - steps, *values.shape[1:]), dtype=dtype)
            return torch.cat([pad, values])

        rows = []
        for trajectory in trajectories:
            steps = min(len(trajectory["states"]), context)
            rows.append({"states": padded(trajectory["states"], steps, config.state_dim),
                         "actions": padded(trajectory["actions"], steps, config.act_dim),
                         "returns_to_go": padded(trajectory["returns_to_go"], steps, 1),
                         "timesteps": padded(trajectory["timesteps"], steps, dtype=torch.long),
                         "attention_mask": padded(torch.ones(steps), steps)})
        batch = {name: torch.stack([row[name] for row in rows]).to(self.device)
                 for name in rows[0]}
        with torch.no_grad():
            actions = self.model(**batch).action_preds[:, -1].cpu().numpy()
        return [{"action": action} for action in actions]


# Tasks transformers has no pipeline for -> the class that runs the checkpoint instead.
POLICIES = {"reinforcement-learning": DecisionTransformerPolicy}


def reference_from_bundle(bundle: Bundle, task: str, *, generates: bool,
                          threads: int | None = None, device: str = "cpu"
                          ) -> TransformersBackend:
    """The transformers backend for the checkpoint the bundle's manifest names as its source;
    a clear error when the manifest names none or it is gone from this machine."""
    if bundle.manifest.get("family") == "visual-text-encoder":
        raise InputError(
            "transformers has no pipeline for VisualBERT's texts with region features (its "
            "feature-extraction pipeline would drop the regions and time other work). Note: "
            "bench without --against.")
    checkpoint = (bundle.manifest.get("source") or {}).get("checkpoint")
    if not checkpoint:
        raise InputError(
            f"The manifest of {bundle.path} records no source checkpoint, so there is nothing "
            "to run transformers on. Note: bench without --against, or export the bundle again "
            "with `edgeport export`."
        )
    path = Path(checkpoint)
    if not path.is_dir():
        raise InputError(
            f"The checkpoint the bundle was exported from, {checkpoint}, does not exist on this "
            "machine any more. Note: restore it at that path, or bench without --against."
        )
    return TransformersBackend(path, task, generates=generates, threads=threads, device=device)
