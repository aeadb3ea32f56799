r"""CAT objectives: success probabilities, SFT losses and SFT/RL weights of test-time strategies.

A test-time strategy with budget ``N`` turns the single-sample probability ``p`` of the right answer into a
success probability ``F(p)`` (Ousherovitch & Tewari 2026, arXiv 2604.24957, Table 1; SPEC §1–§2):

* Pass@N: ``S_N(p) = 1 - (1 - p)^N``;
* Majority Vote (fixed-threshold surrogate): ``B_{N,k}(p) = P[Bin(N, p) >= k]``;
* Best-of-N: RL rank weight ``N q^{N-1}`` on the lower-tail reward quantile ``q``; its SFT loss is Pass@N's.

CAT SFT minimises ``-log F(p)`` (differentiated directly, never CE times a weight), whose gradient is CE's
scaled by ``w_SFT = dlog F / dlog p = p F'(p) / F(p)``; CAT RL scales policy gradients by ``w_RL = F'(p)``.

Layout: :mod:`~cat_jax.objectives.passn`, :mod:`~cat_jax.objectives.majority`, :mod:`~cat_jax.objectives.bon`
(the closed forms), :mod:`~cat_jax.objectives.registry` (``get``, ``STRATEGIES``, ``from_success_fn``); every
public name is re-exported here (``from cat_jax import objectives as cat; cat.passn_sft_loss(...)``).

Every function is elementwise (any shape in, same shape out), computes half precision in float32, keeps
float64, and stays finite with finite gradients for ``log p`` in ``[-1e4, 0]``. Budgets ``n``, ``k`` and
``reduction`` are keyword-only static Python values; array-domain checks run only with ``validate=True``
(eagerly), and nothing is ever clamped.
"""

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
from cat_jax.objectives.registry import REDUCTIONS, STRATEGIES, Objective, from_success_fn, get

__all__ = [
    "REDUCTIONS",
    "STRATEGIES",
    "Objective",
    "bon_rl_weight",
    "from_success_fn",
    "get",
    "majority_log_probability",
    "majority_probability",
    "majority_rl_weight",
    "majority_sft_loss",
    "majority_sft_weight",
    "majority_sft_weight_from_logp",
    "passn_log_probability",
    "passn_probability",
    "passn_rl_weight",
    "passn_sft_loss",
    "passn_sft_weight",
    "passn_sft_weight_from_logp",
]
