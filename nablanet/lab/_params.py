"""``params=``: which of a model's parameters a lab function works on.

Every lab function takes ``params`` as ``None`` (all of them), or an iterable of state_dict names
(``"2.weight"``) and/or the ``Parameter`` objects themselves (``model[2].weight``), and works on
that block: the Hessian's block H_SS, the per-sample gradients of those parameters only.
"""

from __future__ import annotations

from typing import Any

from nablanet.layers.base import Layer, Tape
from nablanet.parameter import Parameter


def select(model: Layer, params: Any, who: str) -> list[str]:
    """The selected parameter names, in ``model.named_parameters()`` order (all of them for None)."""
    named = list(model.named_parameters())
    if params is None:
        return [name for name, _ in named]
    if isinstance(params, str | Parameter):
        params = [params]
    try:
        wanted = list(params)
    except TypeError:
        raise TypeError(f"{who}(params={params!r}): expected None, or a list of parameter names (e.g. "
                        f"{[n for n, _ in named[-2:]]}) or of the model's Parameters.") from None
    by_id = {id(p): name for name, p in named}
    valid = [name for name, _ in named]
    chosen: set[str] = set()
    for item in wanted:
        if isinstance(item, Parameter):
            if id(item) not in by_id:
                raise KeyError(f"{who}(params=...): a Parameter of shape {item.shape} is not one of this model's; "
                               f"pass the model's own (model.named_parameters()) or names from {valid}.")
            chosen.add(by_id[id(item)])
        elif isinstance(item, str):
            if item not in valid:
                raise KeyError(f"{who}(params=...): {item!r} is not a parameter of the model; expected names "
                               f"from {valid}.")
            chosen.add(item)
        else:
            raise TypeError(f"{who}(params=...): got an item of type {type(item).__name__}; expected a parameter "
                            "name (str) or a Parameter.")
    if not chosen:
        raise ValueError(f"{who}(params=[]): no parameter selected; pass None for all, or names from {valid}.")
    return [name for name in valid if name in chosen]


def selected_shapes(model: Layer, params: Any, who: str) -> dict[str, tuple[int, ...]]:
    """The selected parameters' shapes, in ``model.named_parameters()`` order."""
    shapes = {name: p.shape for name, p in model.named_parameters()}
    return {name: shapes[name] for name in select(model, params, who)}


def selected_tape(model: Layer, tape: Tape, params: Any, who: str) -> Tape:
    """The tape with only the selected parameters' gradients; entries left with none are dropped, so the
    first-order instruments never compute (e.g. materialize per-sample gradients) for the others."""
    if params is None:
        return tape
    keep = set(select(model, params, who))
    out: Tape = []
    for e in tape:
        grads = {local: g for local, g in e.grads.items() if (f"{e.name}.{local}" if e.name else local) in keep}
        if grads:
            out.append(e._replace(grads=grads))
    return out
