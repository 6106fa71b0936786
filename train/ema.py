"""Exponential moving averages of a model's weights, for several decays at once.

After every optimizer step, for each decay lambda:

    ema = lambda * ema + (1 - lambda) * sgd

over the WHOLE state_dict, as timm's ModelEmaV2 does and the paper's authors ran it: parameters
and floating-point buffers (BatchNorm running mean/var) are averaged, integer buffers
(num_batches_tracked) are copied. Each EMA network starts as a copy of the weights the EMA is
built from (the initial weights), with no warm-up and no bias correction; timm's warm-up
decay_eff = min(decay, (1 + step) / (10 + step)) is available as warmup=True.

The EMA never feeds back into SGD, so one run can track all the paper's decays. ResNet-20 at
batch 128 is bound by kernel launches, and a per-tensor Python loop (65 tensors x K decays) can
cost more than the forward and backward pass. So the K EMA copies of each dtype group live in one
(K, P) tensor and an update is a fixed handful of ops whatever K and the number of tensors:

    _foreach_copy_(sgd_views, model_tensors)   # gather the live weights into one flat (P,) vector
    ema.lerp_(flat_sgd, 1 - decays)            # (K, P) += (1 - decay)[:, None] * (sgd - ema)
    _foreach_copy_(int_views, int_buffers)     # integer buffers: copied, one copy for all K

_foreach_copy_ rather than torch.cat(..., out=): cat needs every tensor flattened first, which is
one view op per tensor from a Python loop at each update; _foreach_copy_ takes the tensors as they
are, in one call. On CUDA it is one fused multi-tensor kernel only where every destination has its
source's strides; otherwise it falls back to one copy kernel per tensor. So each tensor's slice of
the flat storage is laid out in the source's own memory order: a channels_last weight (O, I, H, W)
occupies its slice as (O, H, W, I), and its view has the weight's strides. The storage then holds
such weights permuted; flat_params() and state_dict() give them in the table's logical (row-major)
order, as they always did, and load_state_dict() takes that order.

The EMA keeps references to the model's tensors, taken when it is built: build it after moving
the model to its device (Module.to() replaces buffer tensors) and on the raw module, not on a
torch.compile wrapper. Within a group, parameters come first and buffers after, each in
state_dict order, so the float32 parameters of network k are one contiguous slice of the storage.
"""

from collections import OrderedDict

import torch
import torch.nn as nn

from dyn.format import ema_name
from dyn.layout import Param, placed


def _dtype_name(dtype):
    """numpy's name of a torch dtype: "float32", "int64"."""
    return str(dtype).removeprefix("torch.")


def param_table(model) -> list[Param]:
    """The parameter table of model.state_dict(), in its order: params and buffers each flattened
    into one row (float32 and float64)."""
    # remove_duplicate=False: a tied weight appears under every name in the state_dict
    param_names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    return placed([Param(name, tuple(t.shape), "param" if name in param_names else "buffer", _dtype_name(t.dtype))
                   for name, t in model.state_dict().items()])


def _flat(state, rows, dtype):
    parts = [state[r.name].detach().reshape(-1).to(dtype) for r in rows]
    if not parts:
        return torch.zeros(0, dtype=dtype)
    return torch.cat(parts)


def flatten_state(model_or_state_dict, table=None):
    """(params, buffers): the state as one float32 and one float64 1-D tensor, in table order.

    float64 holds every float32 and every integer below 2**53 exactly, so buffers round-trip
    bit-exactly; float32 params do too. A plain state_dict needs the model's table, since a
    state_dict alone does not say which tensors are parameters.
    """
    if isinstance(model_or_state_dict, nn.Module):
        table = table or param_table(model_or_state_dict)
        state = model_or_state_dict.state_dict()
    else:
        if table is None:
            raise TypeError("flatten_state of a state_dict needs table=param_table(model)")
        state = model_or_state_dict
    params = _flat(state, [r for r in table if r.kind == "param"], torch.float32)
    buffers = _flat(state, [r for r in table if r.kind == "buffer"], torch.float64)
    return params, buffers


def unflatten_state(params, buffers, table):
    """The state_dict (new tensors, original dtypes and shapes) that flatten_state flattened."""
    flats = {"param": torch.as_tensor(params), "buffer": torch.as_tensor(buffers)}
    for kind, flat in flats.items():
        need = sum(r.size for r in table if r.kind == kind)
        if flat.numel() != need:
            raise ValueError(f"{kind}s: the table needs {need} values, got {flat.numel()}")
    return OrderedDict(
        (r.name, flats[r.kind][r.offset:r.offset + r.size].reshape(r.shape).to(getattr(torch, r.dtype), copy=True))
        for r in table
    )


def _memory_order(t):
    """The dims of `t` from outermost to innermost in memory: (0, 2, 3, 1) for channels_last."""
    return tuple(sorted(range(t.dim()), key=lambda d: (-t.stride(d), d)))


def _shaped_like(flat, source):
    """`flat` (source.numel() values in source's memory order) as a view with source's shape and
    exactly its strides (size-1 dims included, which CUDA's fused-copy check compares too)."""
    if source.is_contiguous():
        return flat.view(source.shape)
    return flat.as_strided(source.shape, source.stride(), flat.storage_offset())


class _Group:
    """All state_dict tensors of one dtype, flattened: the K EMA copies of them in one tensor."""

    def __init__(self, dtype, rows, sources, num_decays, device):
        self.dtype, self.rows, self.sources = dtype, rows, sources
        self.averaged = dtype.is_floating_point or dtype.is_complex
        self.offsets, p = [], 0
        for r in rows:
            self.offsets.append(p)
            p += r.size
        self.size = p
        # each source in its own memory order (a no-op permute for contiguous ones)
        self.orders = [_memory_order(s) for s in sources]
        self.permuted = any(o != tuple(range(len(o))) for o in self.orders)
        flat_init = torch.cat([s.detach().permute(o).reshape(-1) for s, o in zip(sources, self.orders)]).to(device)
        if self.averaged:
            self.ema = flat_init.repeat(num_decays, 1)  # every EMA starts at the init, (K, P) contiguous
            self.flat_sgd = torch.empty(p, dtype=dtype, device=device)
            staging = self.flat_sgd
        else:
            self.ema = flat_init.clone()  # copied, never averaged: one copy serves all K
            staging = self.ema
        self.views = [_shaped_like(staging[o:o + r.size], s) for o, r, s in zip(self.offsets, rows, sources)]

    def view(self, k, i):
        o, r = self.offsets[i], self.rows[i]
        flat = self.ema[k] if self.averaged else self.ema
        return _shaped_like(flat[o:o + r.size], self.sources[i])

    def logical(self):
        """The storage with every tensor in row-major order (the storage itself when it is)."""
        if not self.permuted:
            return self.ema
        lead = self.ema.shape[:-1]  # (K,) or ()
        parts = [self.ema[..., o:o + r.size].reshape(*lead, *(r.shape[d] for d in order)).permute(
                     *range(len(lead)), *(len(lead) + d for d in sorted(range(len(order)), key=order.__getitem__)))
                 .reshape(*lead, r.size) for o, r, order in zip(self.offsets, self.rows, self.orders)]
        return torch.cat(parts, dim=-1)

    def load_logical(self, flat):
        """Set the storage from `flat`, every tensor in row-major order."""
        if not self.permuted:
            self.ema.copy_(flat)
            return
        lead = self.ema.shape[:-1]
        for o, r, order in zip(self.offsets, self.rows, self.orders):
            part = flat[..., o:o + r.size].reshape(*lead, *r.shape).permute(
                *range(len(lead)), *(len(lead) + d for d in order))
            self.ema[..., o:o + r.size].copy_(part.reshape(*lead, r.size))


class EMA:
    """EMA networks of `model` for each decay in `decays`, updated together.

    ema = EMA(model, [0.9, 0.99, 0.999, 0.9995, 0.9997])
    for ...: loss.backward(); optimizer.step(); ema.update()
    ema.load_into(eval_model, k)   # or torch.func.functional_call(model, ema.state_dict_for(k), x)
    """

    def __init__(self, model, decays, *, warmup=False):
        decays = [float(d) for d in decays]
        if not decays:
            raise ValueError("EMA needs at least one decay")
        bad = [d for d in decays if not 0.0 <= d <= 1.0]
        if bad:
            raise ValueError(f"decays must lie in [0, 1], got {bad}")
        self.decays = tuple(decays)
        self.names = tuple(ema_name(d) for d in decays)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"decays repeat: {decays}")
        self.warmup = warmup
        self.step = 0  # updates done so far
        self.table = param_table(model)
        live = model.state_dict(keep_vars=True)  # the live tensors, not detached copies
        if not live:
            raise ValueError("the model has no state to average")
        device = next(iter(live.values())).device

        by_dtype = {}
        for kind in ("param", "buffer"):  # params first: network k's params are one slice
            for i, r in enumerate(self.table):
                if r.kind == kind:
                    by_dtype.setdefault(live[r.name].dtype, []).append(i)
        self._groups, self._where = [], {}
        for dtype, idx in by_dtype.items():
            rows = [self.table[i] for i in idx]
            group = _Group(dtype, rows, [live[r.name] for r in rows], len(decays), device)
            for j, r in enumerate(rows):
                self._where[r.name] = (group, j)
            if group.averaged:
                group.one_minus_decay = torch.tensor([[1.0 - d] for d in decays], dtype=dtype, device=device)
            self._groups.append(group)

        # network k's float32 params as a view of the storage, when one group holds all of them
        n_params = sum(r.size for r in self.table if r.kind == "param")
        g = self._groups[0]  # the group of the first parameter, params leading
        in_g = sum(r.size for r in g.rows if r.kind == "param")
        self._params_slice = (n_params if (g.averaged and g.dtype == torch.float32 and in_g == n_params
                                           and not g.permuted) else 0)

    @torch.no_grad()
    def update(self):
        """One EMA step of every decay towards the model's current state; call after optimizer.step()."""
        for g in self._groups:  # one group per dtype (usually float32 and int64), not per tensor
            torch._foreach_copy_(g.views, g.sources)
            if g.averaged:
                g.ema.lerp_(g.flat_sgd, self.lerp_weight(g))
        self.step += 1

    def lerp_weight(self, g):
        """The (K, 1) lerp weight of group g at this step: 1 - decay, or with warm-up timm's
        1 - min(decay, (1 + step) / (10 + step)), as one op."""
        if not self.warmup:
            return g.one_minus_decay
        return torch.clamp(g.one_minus_decay, min=1.0 - (1 + self.step) / (10 + self.step))

    def state_dict_for(self, k):
        """EMA network k as a state_dict (model.state_dict()'s keys, shapes and dtypes).

        The tensors are views into the EMA storage: they change at the next update() and writing
        to them changes the EMA. Integer buffers are shared by all K networks.
        """
        return OrderedDict((r.name, self._where[r.name][0].view(k, self._where[r.name][1])) for r in self.table)

    def load_into(self, model, k):
        """Copy EMA network k into `model` (e.g. a second ResNet kept for evaluation); returns it."""
        model.load_state_dict(self.state_dict_for(k))
        return model

    def flat_params(self, k):
        """Network k's parameters as one float32 1-D tensor, in param_table order. A view of the
        storage where possible (the usual all-float32 model): clone it to keep it past update()."""
        if self._params_slice:
            return self._groups[0].ema[k, :self._params_slice]
        return flatten_state(self.state_dict_for(k), self.table)[0]

    def flat_buffers(self, k):
        """Network k's buffers as one float64 1-D tensor (a new tensor), in param_table order."""
        return _flat(self.state_dict_for(k), [r for r in self.table if r.kind == "buffer"], torch.float64)

    def state_dict(self):
        """Everything needed to resume bit-exactly (references to the storage, as Module.state_dict)."""
        return {"decays": list(self.decays), "warmup": self.warmup, "step": self.step,
                "storage": {_dtype_name(g.dtype): g.logical() for g in self._groups}}

    def load_state_dict(self, state):
        if list(state["decays"]) != list(self.decays):
            raise ValueError(f"EMA decays differ: saved {state['decays']}, this EMA {list(self.decays)}")
        saved = state["storage"]
        for g in self._groups:
            key = _dtype_name(g.dtype)
            if key not in saved or saved[key].shape != g.ema.shape:
                raise ValueError(f"EMA storage for {key} does not match this model")
        with torch.no_grad():
            for g in self._groups:
                g.load_logical(saved[_dtype_name(g.dtype)].to(g.ema.device))
        self.warmup = bool(state["warmup"])
        self.step = int(state["step"])
