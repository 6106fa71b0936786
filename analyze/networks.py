"""Networks: their names as the run file spells them ("sgd", "ema-<decay>", e.g. "ema-0.9995"),
and which of a run's networks an analysis looks at (--net)."""

from dyn.errors import RunFileError, UsageError


def decay(network: str) -> float | None:
    """0.9995 for "ema-0.9995"; None for "sgd" and any other name."""
    if network.startswith("ema-"):
        try:
            return float(network[4:])
        except ValueError:
            return None
    return None


def label(network: str) -> str:
    """The paper's legend text: "SGD", "EMA 0.9995"; any other name as given."""
    if network == "sgd":
        return "SGD"
    if network == "ema":  # an imported EMA network of unknown decay
        return "EMA"
    return f"EMA {network[4:]}" if decay(network) is not None else network


def order(networks) -> list:
    """SGD first, then EMA networks by increasing decay, then the rest as given."""
    networks = list(networks)
    emas = sorted((n for n in networks if decay(n) is not None), key=decay)
    rest = [n for n in networks if n != "sgd" and decay(n) is None]
    return (["sgd"] if "sgd" in networks else []) + emas + rest


# ---------------------------------------------------------- choosing a run's networks

def ema_networks(run) -> list[str]:
    """EMA networks of the run (kind "ema", or named ema-<decay>), by increasing decay."""
    emas = [n for n in run.networks if run.network_info(n)["kind"] == "ema" or decay(n) is not None]
    return sorted(emas, key=lambda n: (_decay(run, n) is None, _decay(run, n) or 0.0))


def _decay(run, name):
    d = run.network_info(name)["decay"]
    return d if d is not None else decay(name)


def choose(run, wanted=None) -> list[str]:
    """The networks to analyse: `wanted` (names, `ema` for a run's only EMA network, or a
    decay such as 0.9995), else `sgd` and every EMA network."""
    have = ", ".join(run.networks) or "none"
    if not wanted:
        nets = (["sgd"] if "sgd" in run.networks else []) + ema_networks(run)
        if not nets:
            raise RunFileError(f"{run.path}: has neither an 'sgd' nor an EMA network (networks: {have}); "
                               "choose with --net")
        return nets
    out = []
    for name in wanted:
        net = _one_network(run, name, have)
        if net not in out:
            out.append(net)
    return out


def _one_network(run, name: str, have: str) -> str:
    if name in run.networks:
        return name
    emas = ema_networks(run)
    if name == "ema":
        if len(emas) == 1:
            return emas[0]
        if not emas:
            raise UsageError(f"--net ema: {run.path} has no EMA network (networks: {have})")
        raise UsageError(f"--net ema is ambiguous: {run.path} has {len(emas)} EMA networks "
                         f"({', '.join(emas)}); name one, e.g. --net {emas[-1]}")
    try:  # "0.9995" or "ema-0.99950": the same decay, spelled differently
        want = float(name[4:] if name.startswith("ema-") else name)
    except ValueError:
        want = None
    match = [n for n in emas if want is not None and _decay(run, n) == want]
    if len(match) == 1:
        return match[0]
    raise UsageError(f"--net {name}: no such network in {run.path} (networks: {have})")


def pair(run, wanted=None) -> tuple[str, str]:
    """Two networks to compare: `wanted` if it names exactly two, else sgd and the only EMA."""
    if wanted:
        nets = choose(run, wanted)
        if len(nets) != 2:
            raise UsageError(f"--net: agreement compares two networks; got {len(nets)} ({', '.join(nets)})")
        return nets[0], nets[1]
    emas = ema_networks(run)
    if "sgd" in run.networks and len(emas) == 1:
        return "sgd", emas[0]
    raise UsageError(f"{run.path}: choose the two networks to compare with --net, e.g. --net sgd,"
                     f"{emas[-1] if emas else 'NAME'} (networks: {', '.join(run.networks)})")


def pairs(run, wanted=None) -> list[tuple[str, str]]:
    """The pairs to compare: `wanted` if given (exactly two networks), else sgd with each EMA
    network, by increasing decay (the paper's comparison)."""
    if wanted:
        return [pair(run, wanted)]
    emas = ema_networks(run)
    if "sgd" in run.networks and emas:
        return [("sgd", e) for e in emas]
    lacks = "no EMA network" if "sgd" in run.networks else "no 'sgd' network"
    raise UsageError(f"{run.path}: agreement compares sgd with each EMA network, and it has {lacks} (networks: "
                     f"{', '.join(run.networks) or 'none'}); name the two to compare with --net A,B")
