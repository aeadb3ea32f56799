r"""Best-of-N: the RL rank weight ``N q^{N-1}`` of a lower-tail reward quantile ``q`` (SPEC §2.3); Best-of-N
SFT with a best-possible target is Pass@N SFT."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from cat_jax.objectives import _checks as ck


def bon_rl_weight(q: ArrayLike, *, n: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Best-of-N rank weight ``N q^{N-1}`` (Table 1; SPEC §2.3), ``q = P[R(Y') < R(y)]``.

    ``q`` is a lower-tail reward quantile (not a reward or a probability of the sample). Diagonal
    approximation of the expected-maximum gradient; ``w_BoN(1 - q) = w_RL^{Pass@N}(q)``. Best-of-N SFT with
    a best-possible target is Pass@N SFT.

    >>> round(float(bon_rl_weight(0.9, n=8)), 4)
    3.8264
    """
    n = ck.budget(n)
    q = ck.prob_input(q, validate, name="q")
    return ck.nan_outside_unit(q, ck.n_pow(n, q, n - 1, log_base=jnp.log(jnp.where(q > 0, q, 0.5))))
