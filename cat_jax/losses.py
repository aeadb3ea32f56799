r"""CAT SFT losses and the CAT RL policy loss as loss functions (SPEC §2.4, §2.7, §2.10, §3.2).

Two layers (DESIGN §2.5):

* maths on arrays, unreduced: :func:`sft_sequence_losses`, :func:`policy_loss_terms` (per completion), on
  the log-probs of :mod:`cat_jax.logprobs` (re-exported here: ``token_log_probs``, ``completion_log_probs``,
  ``model_token_log_probs``, ``check_supervision``, ``IGNORE``);
* ``loss_fn(params, batch, rng) -> (loss, metrics)`` factories for ``jax.value_and_grad(has_aux=True)``:
  :func:`make_sft_loss_fn` and :func:`make_rl_loss_fn`, for any model used through
  ``apply_fn(params, tokens, positions, cache) -> (logits, cache)``.

Token layout (:mod:`cat_jax.logprobs`): ``labels [b, L]`` hold the target token at supervised positions and
``-100`` elsewhere, one causal shift; old/reference log-probs from :func:`cat_jax.sampling.sequence_log_probs`
use the same layout and plug in.

Micro-batching: every loss here is a *sum* of per-sequence terms divided by a denominator that the caller
may fix for the whole logical batch (``batch["denominator"]``: sequences or target tokens of the SFT
accumulation window; ``batch["num_completions"]``: ``B M`` for RL). Summing the gradients of the
micro-batches then equals the gradient of the whole batch exactly (with ``optax.MultiSteps``, which averages,
pass the denominator divided by the number of micro-steps).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from cat_jax import numerics as nx
from cat_jax import objectives as obj
from cat_jax import plurality
from cat_jax.logprobs import (
    IGNORE,
    ApplyFn,
    check_supervision,
    completion_log_probs,
    model_token_log_probs,
    positions_for,
    shared_prompt_log_probs,
    token_log_probs,
)

SFT_STRATEGIES = ("ce", "passn", "majority")
SFT_REDUCTIONS = ("sequence_mean", "token_mean")
SURROGATES = ("reinforce", "clipped")

LossFn = Callable[[PyTree, Mapping[str, Array], Array], tuple[Array, dict[str, Array]]]


# ----------------------------------------------------------------------------- SFT


@dataclasses.dataclass(frozen=True)
class SFTObjective:
    """A CAT SFT objective: ``strategy`` ce | passn (``n``) | majority (``n``, ``k``) and the window
    ``reduction`` sequence_mean | token_mean (SPEC §3.2). Validated on construction."""

    strategy: str = "ce"
    n: int = 1
    k: int = 1
    reduction: str = "sequence_mean"

    def __post_init__(self):
        nx.check_choice("strategy", self.strategy, SFT_STRATEGIES)
        nx.check_choice("reduction", self.reduction, SFT_REDUCTIONS)
        n = nx.check_int("n", self.n, minimum=1)
        nx.check_int("k", self.k, minimum=1, maximum=n)
        if self.strategy == "ce" and n != 1:
            raise ValueError(f"n must be 1 with strategy='ce', got n={n}")
        if self.strategy != "majority" and self.k != 1:
            raise ValueError(f"k is only used by strategy='majority', got k={self.k}")

    def objective(self) -> obj.Objective:
        """The bound :class:`cat_jax.objectives.Objective`."""
        if self.strategy == "ce":
            return obj.get("ce")
        if self.strategy == "passn":
            return obj.get("passn", n=self.n)
        return obj.get("majority", n=self.n, k=self.k)


def sft_sequence_losses(log_p: Float[Array, "*b"], *, objective: SFTObjective) -> Float[Array, "*b"]:
    r"""Per-sequence CAT SFT loss ``-log F(p)``: CE ``-log p``, Pass@N ``-log S_N``, Majority ``-log B_N,k``.

    Differentiated directly (never CE times a weight). ``log p = 0`` (a padding row without targets)
    gives 0 with zero gradient into the model. Shapes ``[...] -> [...]``.

    >>> [round(float(x), 4) for x in sft_sequence_losses(jnp.log(jnp.array([0.1, 0.3])),
    ...                                                  objective=SFTObjective("passn", n=4))]
    [1.0674, 0.2746]
    """
    return objective.objective().sft_loss(log_p, reduction="none")


def sft_denominator(labels: Int[ArrayLike, "*b l"], *, reduction: str) -> Int[Array, ""]:
    """``D`` of one accumulation window (SPEC §3.2): rows with a target (sequence_mean) or target tokens."""
    nx.check_choice("reduction", reduction, SFT_REDUCTIONS)
    sup = jnp.asarray(labels) != IGNORE
    if reduction == "token_mean":
        return jnp.sum(sup).astype(jnp.int32)
    return jnp.sum(jnp.any(sup, axis=-1)).astype(jnp.int32)


def sft_loss(
    logits: Float[Array, "b l v"],
    labels: Int[ArrayLike, "b l"],
    *,
    objective: SFTObjective,
    denominator: ArrayLike | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    r"""``L = sum_i loss_i / D`` over the rows of this (micro-)batch and metrics.

    ``D`` defaults to :func:`sft_denominator` of this batch; pass the window's ``D`` when it is split
    into micro-batches. Metrics: ``loss/sft``, ``sft/log_p`` (mean over rows with targets),
    ``sft/weight`` (mean ``w_SFT = -d loss_i / d log p_i``, a diagnostic), ``sft/target_tokens``.
    """
    log_p, tokens = completion_log_probs(logits, labels)
    per = sft_sequence_losses(log_p, objective=objective)
    d = sft_denominator(labels, reduction=objective.reduction) if denominator is None else denominator
    d = jnp.asarray(d, per.dtype)
    loss = jnp.sum(per) / d
    rows = tokens > 0
    nrows = jnp.maximum(jnp.sum(rows), 1)
    lp = jax.lax.stop_gradient(log_p)
    w = objective.objective().sft_weight_from_logp(lp)
    metrics = {
        "loss/sft": loss,
        "sft/log_p": jnp.sum(jnp.where(rows, lp, 0)) / nrows,
        "sft/weight": jnp.sum(jnp.where(rows, w, 0)) / nrows,
        "sft/target_tokens": jnp.sum(tokens).astype(per.dtype),
    }
    return loss, metrics


def make_sft_loss_fn(apply_fn: ApplyFn, *, objective: SFTObjective) -> LossFn:
    """``loss_fn(params, batch, rng) -> (loss, metrics)`` for CAT SFT.

    ``batch``: ``tokens [b, L]`` (model input), ``labels [b, L]`` (-100 where unsupervised), optional
    ``positions [b, L]`` and ``denominator`` (the accumulation window's ``D``; see the module docstring).
    ``rng`` is unused (no dropout) but kept for the common signature.
    """
    if not isinstance(objective, SFTObjective):
        raise ValueError(f"objective must be an SFTObjective, got {type(objective).__name__}")

    def loss_fn(params, batch, rng):
        del rng
        tokens = jnp.asarray(batch["tokens"])
        pos = batch.get("positions")
        logits, _ = apply_fn(params, tokens, positions_for(tokens) if pos is None else pos, None)
        return sft_loss(logits, batch["labels"], objective=objective, denominator=batch.get("denominator"))

    return loss_fn


# ----------------------------------------------------------------------------- RL


@dataclasses.dataclass(frozen=True)
class PolicyLossConfig:
    """RL policy loss (SPEC §2.7): ``surrogate`` reinforce | clipped (sequence ratio, ``clip_ratio``) and the
    k3 KL to a frozen reference with coefficient ``kl_beta`` (0 = off)."""

    surrogate: str = "reinforce"
    clip_ratio: float = 0.2
    kl_beta: float = 0.0

    def __post_init__(self):
        nx.check_choice("surrogate", self.surrogate, SURROGATES)
        if not 0 < self.clip_ratio < 1:
            raise ValueError(f"clip_ratio must be in (0, 1), got {self.clip_ratio}")
        if not self.kl_beta >= 0:
            raise ValueError(f"kl_beta must be >= 0, got {self.kl_beta}")


def policy_loss_terms(
    current: Float[Array, "*b l"],
    mask: Bool[ArrayLike, "*b l"],
    advantages: Float[ArrayLike, "*b"],
    weights: Float[ArrayLike, "*b"],
    *,
    config: PolicyLossConfig,
    old: Float[ArrayLike, "*b l"] | None = None,
    reference: Float[ArrayLike, "*b l"] | None = None,
) -> tuple[Float[Array, "*b"], dict[str, Array]]:
    r"""Per-completion loss ``L_i`` (SPEC §2.7); the caller sums and divides by ``B M``.

    With ``a = sg[A w]``, completion mask ``m_t`` and token log-probs ``l_t`` (``[..., L]``):
    reinforce ``L = -a sum_t m_t l_t``; clipped ``rho = exp(sum_t m_t (l_t - sg[l_t^old]))``,
    ``L = -min(rho a, clip(rho, 1 - eps, 1 + eps) a)``; plus, if ``beta > 0``,
    ``beta sum_t m_t (e^D - D - 1) / sum_t m_t`` with ``D = sg[l^ref] - l`` (k3 KL, >= 0, 0 at the reference).

    >>> cfg = PolicyLossConfig(surrogate="clipped")
    >>> cur, m = jnp.array([[0.0, -0.1]]), jnp.array([[False, True]])
    >>> L, _ = policy_loss_terms(cur, m, jnp.ones(1), jnp.ones(1), config=cfg, old=jnp.array([[0.0, -1.0]]))
    >>> round(float(L[0]), 4)
    -1.2
    """
    # The one place where gradients stop: advantages, weights, old and reference log-probs are constants.
    a = jax.lax.stop_gradient(jnp.asarray(advantages) * jnp.asarray(weights)).astype(current.dtype)
    old = None if old is None else jax.lax.stop_gradient(jnp.asarray(old, current.dtype))
    reference = None if reference is None else jax.lax.stop_gradient(jnp.asarray(reference, current.dtype))

    m = jnp.asarray(mask, bool)
    cur = jnp.where(m, current, jnp.zeros_like(current))
    metrics: dict[str, Array] = {}
    if config.surrogate == "reinforce":
        per = -a * jnp.sum(cur, axis=-1)
    else:
        if old is None:
            raise ValueError(
                "old (token log-probs of the sampling policy) is required by surrogate='clipped'"
            )
        ratio = jnp.exp(jnp.sum(jnp.where(m, cur - old, jnp.zeros_like(cur)), axis=-1))
        clipped = jnp.clip(ratio, 1 - config.clip_ratio, 1 + config.clip_ratio)
        per = -jnp.minimum(ratio * a, clipped * a)
        metrics["rl/ratio"] = jnp.mean(jax.lax.stop_gradient(ratio))
        metrics["rl/clipped_fraction"] = jnp.mean((ratio != clipped).astype(per.dtype))
    if config.kl_beta > 0:
        if reference is None:
            raise ValueError(
                "reference (token log-probs of the frozen reference) is required when kl_beta > 0"
            )
        # Masked positions see D = 0 so exp never meets an unscored (possibly huge) difference.
        delta = jnp.where(m, reference - cur, jnp.zeros_like(cur))
        ntok = jnp.sum(m, axis=-1).astype(per.dtype)
        kl = jnp.sum(jnp.expm1(delta) - delta, axis=-1) / jnp.maximum(ntok, 1)
        per = per + config.kl_beta * kl
        metrics["rl/kl"] = jnp.mean(jax.lax.stop_gradient(kl))
    return per, metrics


def make_rl_loss_fn(
    apply_fn: ApplyFn, *, config: PolicyLossConfig, make_cache: Callable[[int, int], PyTree] | None = None
) -> LossFn:
    r"""``loss_fn(params, batch, rng) -> (loss, metrics)`` for CAT RL: ``sum_i L_i / (B M)``.

    Two batch layouts, the same loss:

    * joined rows (any leading shape ``*b``, e.g. ``[B, M]`` or a chunk ``[r]`` of completions):
      ``tokens [*b, L]``, ``mask [*b, L]`` (completion tokens to score; position 0 is never scored), optional
      ``positions``; old/reference log-probs in the layout of :func:`token_log_probs` (e.g.
      :func:`model_token_log_probs` or ``sampling.sequence_log_probs``);
    * shared prompts (needs ``make_cache(rows, slots)``): ``prompts [B, P]`` (right-padded), ``lengths [B]``,
      ``completions [B, M, L]`` and ``mask [B, M, L]`` (True on completion tokens), scored by
      :func:`cat_jax.logprobs.shared_prompt_log_probs` (each prompt's forward runs once for its ``M``
      completions); old/reference log-probs ``[B, M, L]`` in that layout.

    Both: ``advantages [*b]``, ``weights [*b]``, ``num_completions`` (``B M`` of the *logical* batch; defaults
    to this batch's size), ``old_log_probs`` (clipped surrogate), ``ref_log_probs`` (``kl_beta > 0``).
    """
    if not isinstance(config, PolicyLossConfig):
        raise ValueError(f"config must be a PolicyLossConfig, got {type(config).__name__}")
    required = ["mask", "advantages", "weights"]
    if config.surrogate == "clipped":
        required.append("old_log_probs")
    if config.kl_beta > 0:
        required.append("ref_log_probs")

    def loss_fn(params, batch, rng):
        del rng
        shared = "completions" in batch
        layout = ["prompts", "lengths", "completions"] if shared else ["tokens"]
        missing = [key for key in layout + required if key not in batch]
        if missing:
            raise ValueError(f"batch is missing {missing} (needed by {config})")
        mask = jnp.asarray(batch["mask"], bool)
        if shared:
            if make_cache is None:
                raise ValueError(
                    "a shared-prompt batch (prompts, lengths, completions) needs make_rl_loss_fn(..., "
                    "make_cache=...) (an empty KV cache of the model: make_cache(rows, slots))"
                )
            cur = shared_prompt_log_probs(
                apply_fn, params, make_cache, batch["prompts"], batch["lengths"], batch["completions"], mask
            )
        else:
            tokens = jnp.asarray(batch["tokens"])
            mask = mask & (jnp.arange(tokens.shape[-1]) > 0).reshape((1,) * (mask.ndim - 1) + (-1,))
            labels = jnp.where(mask, tokens, IGNORE)
            cur = model_token_log_probs(apply_fn, params, tokens, labels, batch.get("positions"))
        per, metrics = policy_loss_terms(
            cur,
            mask,
            batch["advantages"],
            batch["weights"],
            config=config,
            old=batch.get("old_log_probs"),
            reference=batch.get("ref_log_probs"),
        )
        total = batch.get("num_completions", per.size)
        loss = jnp.sum(per) / jnp.asarray(total, per.dtype)
        return loss, {**metrics, "loss/policy": loss}

    return loss_fn


# ----------------------------------------------------------------------------- exact plurality SFT


def make_plurality_sft_loss_fn(apply_fn: ApplyFn, *, n: int, ties: str = "first") -> LossFn:
    r"""``loss_fn`` for the exact Majority-Vote SFT objective on tasks with a finite answer set.

    ``batch``: ``candidate_tokens [b, C, L]`` (prompt + each of the ``C`` candidate answers, right-padded),
    ``candidate_labels [b, C, L]`` (-100 except on the answer tokens) and ``target [b]`` (index of the correct
    candidate). The model's probabilities of the ``C`` answers (the rest of its mass counts as unparseable) go
    into :func:`cat_jax.plurality.majority_exact_sft_loss`: ``-log P[target wins an n-sample plurality]``,
    which, unlike the fixed-threshold surrogate, also pushes rival answers down. Cost ``O(C N^3)`` per prompt
    (``O(C^2 N^3)`` with ``ties="first"``) plus ``C`` forward passes per prompt.
    """
    n = nx.check_int("n", n, minimum=1)
    nx.check_choice("ties", ties, ("first", "fail"))

    def loss_fn(params, batch, rng):
        del rng
        tokens, labels = batch["candidate_tokens"], batch["candidate_labels"]
        log_p = jnp.sum(model_token_log_probs(apply_fn, params, tokens, labels), axis=-1)  # [b, C]
        loss = plurality.majority_exact_sft_loss(log_p, batch["target"], n=n, ties=ties)
        target_lp = jnp.take_along_axis(log_p, jnp.asarray(batch["target"])[:, None], axis=1)[:, 0]
        metrics = {
            "loss/sft": loss,
            "sft/log_p": jnp.mean(jax.lax.stop_gradient(target_lp)),
            "sft/answer_mass": jnp.mean(jnp.sum(jnp.exp(jax.lax.stop_gradient(log_p)), axis=-1)),
        }
        return loss, metrics

    return loss_fn


__all__ = [
    "IGNORE",
    "SFT_REDUCTIONS",
    "SFT_STRATEGIES",
    "SURROGATES",
    "PolicyLossConfig",
    "SFTObjective",
    "check_supervision",
    "completion_log_probs",
    "make_plurality_sft_loss_fn",
    "make_rl_loss_fn",
    "make_sft_loss_fn",
    "model_token_log_probs",
    "policy_loss_terms",
    "sft_denominator",
    "sft_loss",
    "sft_sequence_losses",
    "token_log_probs",
]
