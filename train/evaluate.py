"""Evaluating several networks of one architecture on one split, per sample.

The networks share the module (`model`) and differ only in their state: the live SGD network is
the module itself, each EMA network is a state_dict run through torch.func.functional_call
(views into the EMA storage, no copies). Batches are prepared once and fed to every network,
results stay on the device until the split is done: one host transfer per split.

Two ways to run the networks on a batch, equal in results:
  loop     one forward pass per network;
  stacked  all networks at once: their states stacked along a new first dimension and
           torch.func.vmap over functional_call, so every layer is one (grouped) kernel for
           all of them. On a GPU, where a ResNet-20 at eval batch size is bound by kernel
           launches, that divides the launches by the number of networks; on a CPU, where
           arithmetic dominates, it is slower (grouped convolutions), so `auto` stacks on CUDA
           only. benchmarks/record_bench.py measures both.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from dyn.writer import Eval


def per_sample(logits: torch.Tensor, labels: torch.Tensor):
    """(correct, predicted, loss, prob, margin) per sample of float (B, C) logits, on their device.

    prob: softmax probability of the true class, exp(-loss); margin: the true class's logit minus
    the largest other logit (Pleiss et al.'s AUM margin, on raw logits). Correct is argmax == label,
    as for every split, so a tie at the top can be wrong with margin 0."""
    pred = logits.argmax(dim=1)
    loss = F.cross_entropy(logits, labels, reduction="none")
    true = logits.gather(1, labels[:, None])
    other = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return pred == labels, pred, loss, torch.exp(-loss), true[:, 0] - other


def batches(inputs: torch.Tensor, labels: torch.Tensor, batch_size: int,
            transform: Callable | None = None) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Batches in dataset order, `transform` (e.g. uint8 -> normalised float) applied per batch."""
    for i in range(0, len(labels), batch_size):
        x = inputs[i:i + batch_size]
        yield (transform(x) if transform else x), labels[i:i + batch_size]


@torch.no_grad()
def evaluate(model: torch.nn.Module, states: Mapping[str, Mapping[str, torch.Tensor] | None],
             inputs: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1000,
             transform: Callable | None = None, autocast: torch.autocast | None = None,
             stacked: bool | None = None) -> dict[str, Eval]:
    """Evaluate every network in `states` (name -> state_dict, or None for `model`'s own state):
    its per_sample results on the host, as the run file's record type.

    The module is put in eval mode (BatchNorm uses each network's own running statistics) and
    restored to its previous mode afterwards. stacked: run all networks in one vmapped pass
    (None: on CUDA only; see the module docstring).
    """
    if stacked is None:
        stacked = inputs.device.type == "cuda" and len(states) > 1
    was_training = model.training
    model.eval()
    out = {name: ([], [], [], [], []) for name in states}
    forward = _stacked_forward(model, states) if stacked else None
    try:
        for x, y in batches(inputs, labels, batch_size, transform):
            with autocast if autocast is not None else nullcontext():
                if stacked:
                    all_logits = forward(x)  # (networks, batch, classes)
                    per_net = zip(states, all_logits)
                else:
                    per_net = ((name, model(x) if state is None else functional_call(model, dict(state), (x,)))
                               for name, state in states.items())
                for name, logits in per_net:
                    for acc, value in zip(out[name], per_sample(logits.float(), y)):
                        acc.append(value)
    finally:
        model.train(was_training)
    result = {}
    for name, parts in out.items():
        if parts[0]:
            correct, predicted, loss, prob, margin = (torch.cat(v).cpu().numpy() for v in parts)
            result[name] = Eval(correct=correct, predicted=predicted, loss=loss, prob=prob, margin=margin)
        else:
            empty = np.zeros(0, np.float32)
            result[name] = Eval(correct=np.zeros(0, bool), predicted=np.zeros(0, np.int64), loss=empty, prob=empty,
                                margin=empty)
    return result


def _stacked_forward(model: torch.nn.Module, states: Mapping[str, Mapping[str, torch.Tensor] | None]):
    """x -> logits of every network, (networks, batch, classes), in one vmapped pass."""
    own = model.state_dict()
    dicts = [own if st is None else st for st in states.values()]
    # one copy of every network's state per split: small next to the activations
    stacked = {k: torch.stack([d[k] for d in dicts]) for k in own}

    def one(state, x):
        return functional_call(model, state, (x,))

    batched = vmap(one, in_dims=(0, None))
    return lambda x: batched(stacked, x)
