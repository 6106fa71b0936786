"""Network names as the run file spells them: "sgd" and "ema-<decay>" (e.g. "ema-0.9995")."""


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
