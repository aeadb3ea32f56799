"""Strategies by name: :class:`Objective` bundles one strategy's functions with its budgets bound
(``get("majority", n=8, k=3)``), and :func:`from_success_fn` derives them from any success function by
autodiff."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array

from cat_jax import numerics as nx
from cat_jax.objectives import _checks as ck
from cat_jax.objectives.bon import bon_rl_weight
from cat_jax.objectives.majority import (
    majority_log_probability,
    majority_probability,
    majority_rl_weight,
    majority_sft_loss,
    majority_sft_weight,
    majority_sft_weight_from_logp,
)
from cat_jax.objectives.passn import (
    passn_log_probability,
    passn_probability,
    passn_rl_weight,
    passn_sft_loss,
    passn_sft_weight,
    passn_sft_weight_from_logp,
)

REDUCTIONS = nx.REDUCTIONS


@dataclasses.dataclass(frozen=True)
class Objective:
    """One strategy's CAT functions with its budgets bound; every field is elementwise.

    ``probability(p)``, ``log_probability(log_p)``, ``sft_loss(log_p, reduction=...)``,
    ``sft_weight(p)``, ``sft_weight_from_logp(log_p)``, ``rl_weight(p)`` (for ``bon``: of the quantile ``q``).
    """

    name: str
    probability: Callable[..., Array]
    log_probability: Callable[..., Array]
    sft_loss: Callable[..., Array]
    sft_weight: Callable[..., Array]
    sft_weight_from_logp: Callable[..., Array]
    rl_weight: Callable[..., Array]


def _bind(name, **static) -> Objective:
    if name == "majority":
        fns = (
            majority_probability,
            majority_log_probability,
            majority_sft_loss,
            majority_sft_weight,
            majority_sft_weight_from_logp,
            majority_rl_weight,
        )
    else:
        fns = (
            passn_probability,
            passn_log_probability,
            passn_sft_loss,
            passn_sft_weight,
            passn_sft_weight_from_logp,
            bon_rl_weight if name == "bon" else passn_rl_weight,
        )
    return Objective(name, *(functools.partial(f, **static) for f in fns))


def _ce() -> Objective:
    return _bind("ce", n=1)


def _passn(*, n: int) -> Objective:
    return _bind("passn", n=ck.budget(n))


def _majority(*, n: int, k: int) -> Objective:
    n, k = ck.threshold(n, k)
    return _bind("majority", n=n, k=k)


def _bon(*, n: int) -> Objective:
    return _bind("bon", n=ck.budget(n))


STRATEGIES: dict[str, Callable[..., Objective]] = {
    "ce": _ce,
    "passn": _passn,
    "majority": _majority,
    "bon": _bon,
}


def get(name: str, **budgets) -> Objective:
    """The :class:`Objective` for strategy ``name`` with its budgets, e.g. ``get("majority", n=8, k=3)``.

    >>> float(get("passn", n=4).rl_weight(0.1))
    2.916...
    """
    nx.check_choice("strategy", name, STRATEGIES)
    try:
        return STRATEGIES[name](**budgets)
    except TypeError as e:
        raise ValueError(f"strategy {name!r} got budgets {sorted(budgets)}: {e}") from None


def from_success_fn(
    success_fn: Callable[[Array], Array],
    *,
    log_success_fn: Callable[[Array], Array] | None = None,
    name: str = "custom",
) -> Objective:
    r"""Derive a strategy's CAT loss and weights from its success function ``F(p)`` by autodiff.

    ``F`` maps the single-sample success probability to the probability that the test-time strategy
    succeeds; it must be elementwise and differentiable on ``(0, 1)``. Returned, as an :class:`Objective`:
    ``log_probability(log p) = log F(e^{log p})`` (or ``log_success_fn`` if given, for tiny ``p``),
    ``sft_loss = -log F``, ``sft_weight = p F'(p) / F(p)``, ``sft_weight_from_logp = d log F / d log p`` and
    ``rl_weight = F'(p)``; the closed forms above are special cases.

    >>> obj = from_success_fn(lambda p: 1 - (1 - p) ** 2)
    >>> round(float(obj.rl_weight(0.25)), 6), round(float(obj.sft_weight(0.5)), 6)
    (1.5, 0.666667)
    """
    if not callable(success_fn):
        raise ValueError(f"success_fn must be callable, got {type(success_fn).__name__}")

    def derivative(fn, x):
        return jax.jvp(fn, (x,), (jnp.ones_like(x),))

    def probability(p, validate=False):
        return success_fn(ck.prob_input(p, validate))

    def log_probability(log_p, validate=False):
        lp = ck.log_input(log_p, validate)
        if log_success_fn is not None:
            return log_success_fn(lp)
        return jnp.log(success_fn(jnp.exp(lp)))

    def sft_loss(log_p, reduction="mean", validate=False):
        nx.check_choice("reduction", reduction, nx.REDUCTIONS)
        return nx.reduce(-log_probability(log_p, validate=validate), reduction)

    def sft_weight(p, validate=False):
        p = ck.prob_input(p, validate)
        f, df = derivative(success_fn, p)
        return p * df / f

    def sft_weight_from_logp(log_p, validate=False):
        lp = ck.log_input(log_p, validate)
        return derivative(log_probability, lp)[1]

    def rl_weight(p, validate=False):
        return derivative(success_fn, ck.prob_input(p, validate))[1]

    return Objective(
        name, probability, log_probability, sft_loss, sft_weight, sft_weight_from_logp, rl_weight
    )
