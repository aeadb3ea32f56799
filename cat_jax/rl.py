r"""CAT RL as one jitted step: rollout, scoring, CAT weights, advantages and the policy update (SPEC §3.3).

``rl_step(state, batch) -> (state, metrics)`` where ``batch`` holds ``B`` right-padded prompts and whatever
the scorer needs (e.g. reference answers). Inside one compiled function it

1. samples ``M`` completions per prompt with the current parameters (the N samples share the prefilled cache);
2. scores them into rewards, answer clusters and validity, all ``[B, M]``;
3. takes the old sequence log-probs from the sampler's untempered ``log softmax`` (current parameters,
   temperature 1: SPEC §3.3 step 3) and computes the CAT weights (:func:`cat_jax.weights.cat_weights`) and the
   group advantages (:func:`cat_jax.advantages.compute_advantages`);
4. differentiates ``sum_i L_i / (B M)`` (REINFORCE or clipped, optional k3 KL to a frozen reference) and
   applies one optimizer step, unless the loss is non-finite (then nothing changes). The update scores the
   completions with each prompt's forward run once for its ``M`` samples
   (:func:`cat_jax.logprobs.shared_prompt_log_probs`: the same log-probs as the joined rows, less compute).

The reward history of Best-of-N with ``quantile="history"`` lives in ``state.extra["history"]`` and is queried
before the update, appended after it; the frozen reference of the KL term in ``state.extra["reference"]``.
Training budget ``M`` and the aligned test-time budget ``N`` are independent settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Int, PyTree

from cat_jax import advantages as adv
from cat_jax import evaluation, logprobs, losses, sampling, train_lib
from cat_jax import numerics as nx
from cat_jax import weights as wts


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RolloutScores:
    """What a scorer returns, all ``[B, M]``: rewards, answer cluster ids and validity (for Majority)."""

    rewards: Any
    answer_ids: Any
    valid: Any


def exact_match_scores(
    completions: Int[Array, "b m l"], mask: Bool[Array, "b m l"], batch: dict[str, Array]
) -> RolloutScores:
    """Binary verifier for tasks whose answer is one exact token string (``batch["targets"] [B, T]``).

    A completion is valid when it stopped (its last unmasked token is a stop token, i.e. it is shorter than
    the budget or ends on one: ``batch["stop_token"]``); it is correct when its tokens up to and including the
    stop token equal ``targets[b, :target_lengths[b]]``. Answer ids cluster identical completions within a
    prompt (id = index of the first identical sample), so Majority sees the vote counts.
    """
    targets = batch["targets"]
    tlen = batch["target_lengths"]
    length = completions.shape[-1]
    t = targets.shape[-1]
    width = max(length, t)
    pad = lambda x, w, v: jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, w - x.shape[-1])], constant_values=v)
    comp = jnp.where(mask, completions, -1)
    comp = pad(comp, width, -1)
    tgt = jnp.where(jnp.arange(t)[None, :] < tlen[:, None], targets, -1)
    tgt = pad(tgt, width, -1)
    lengths = jnp.sum(mask, axis=-1)
    last = jnp.take_along_axis(completions, jnp.clip(lengths - 1, 0, length - 1)[..., None], axis=-1)[..., 0]
    valid = (lengths > 0) & (last == batch["stop_token"][:, None])
    correct = valid & jnp.all(comp == tgt[:, None, :], axis=-1)
    same = jnp.all(comp[:, :, None, :] == comp[:, None, :, :], axis=-1)  # [b, m, m]
    ids = jnp.argmax(same, axis=-1).astype(jnp.int32)  # first identical sample
    return RolloutScores(rewards=correct.astype(jnp.float32), answer_ids=ids, valid=valid)


ScoreFn = Callable[[Array, Array, dict], RolloutScores]
# host(tokens [B, M, L], mask [B, M, L], index [B]) -> [B, M] rewards (float32), answer ids (int32), valid.
HostScorer = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def host_score_fn(host: HostScorer, *, index_key: str | None = None, who: str = "the host scorer") -> ScoreFn:
    """A :data:`ScoreFn` for the jitted RL step from a numpy verifier that runs on the host (decoding text,
    MATH answer checks, protein rewards) through ``jax.pure_callback``.

    ``host`` gets the sampled tokens, their mask and ``batch[index_key]`` (each prompt's row of whatever the
    verifier looks up: references, input sequences; zeros when ``index_key`` is None) as numpy arrays.
    """

    def call(tokens, mask, index):
        rewards, ids, valid = host(np.asarray(tokens), np.asarray(mask, bool), np.asarray(index))
        return (np.asarray(rewards, np.float32), np.asarray(ids, np.int32), np.asarray(valid, bool))

    def score_fn(completions: ArrayLike, mask: ArrayLike, batch: Mapping[str, Any]) -> RolloutScores:
        b, m = completions.shape[:2]
        if index_key is not None and index_key not in batch:
            raise ValueError(
                f"{who} reads batch[{index_key!r}] (each prompt's row); build the RL batch with the task's "
                "prompt_batch"
            )
        index = jnp.zeros((b,), jnp.int32) if index_key is None else batch[index_key]
        shapes = tuple(jax.ShapeDtypeStruct((b, m), t) for t in (jnp.float32, jnp.int32, jnp.bool_))
        rewards, ids, valid = jax.pure_callback(
            call, shapes, completions, mask, index, vmap_method="sequential"
        )
        # A no-op tying the results to a batch input: returned as they are, callback results carry a maximal
        # (device 0) sharding that Shardy cannot read back once the batch is sharded over devices.
        row = (jnp.asarray(batch["lengths"]) >= 0)[:, None]
        return RolloutScores(jnp.where(row, rewards, 0.0), jnp.where(row, ids, -1), valid & row)

    return score_fn


def _accumulate(grad_fn, params, batch: dict, key, micro_batches: int):
    """``grad_fn(params, batch, key)`` of a policy batch in ``micro_batches`` equal chunks, summed (values and
    gradients); metrics are averaged over the chunks. Chunks of whole prompt groups (shared-prompt layout,
    every array ``[B, ...]``) or of the ``B M`` completions (joined rows ``[B, M, ...]``)."""
    if micro_batches == 1:
        return grad_fn(params, batch, key)
    n = int(batch["num_completions"])
    if n % micro_batches:
        raise ValueError(
            f"micro_batches={micro_batches} must divide the {n} completions of a step (prompts x samples)"
        )
    if "completions" in batch:  # shared-prompt layout: every array is [B, ...]; chunks of whole groups
        chunk = lambda x: x.reshape(micro_batches, x.shape[0] // micro_batches, *x.shape[1:])
    else:  # joined rows [B, M, ...]: chunks of completions
        chunk = lambda x: x.reshape(micro_batches, n // micro_batches, *x.shape[2:])
    chunks = {k: chunk(v) for k, v in batch.items() if k != "num_completions"}

    def body(total, part):
        (value, metrics), grads = grad_fn(params, {**part, "num_completions": n}, key)
        return jax.tree.map(jnp.add, total, (value, grads)), metrics

    zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
    (value, grads), metrics = jax.lax.scan(body, zero, chunks)
    metrics = jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)
    return (value, {**metrics, "loss/policy": value}), grads


def make_rl_step(
    apply: Any,
    tx: optax.GradientTransformation,
    make_cache: Callable[[int, int], PyTree],
    *,
    rollout: sampling.SampleConfig,
    weights: wts.WeightConfig,
    advantages: adv.AdvantageConfig,
    loss: losses.PolicyLossConfig,
    score_fn: ScoreFn = exact_match_scores,
    reward_transform: str = "identity",
    transform_k: int = 1,
    stop_tokens: tuple[int, ...] = (),
    pad_id: int = 0,
    micro_batches: int = 1,
):
    """``rl_step(state, batch, frozen=None) -> (state, metrics)``; jit it once (``donate_argnums=0``).

    ``frozen``: the untrained part of the policy (a LoRA base): ``apply`` reads ``(state.params, frozen)``
    (:func:`cat_jax.train_lib.with_frozen`), only ``state.params`` is updated, and a KL reference in
    ``state.extra["reference"]`` is a copy of the trained part (the frozen warm-up adapter, same base).

    ``rollout``: ``num_samples`` (M >= 2, compared within a group) completions per prompt and their sampling
    settings (``chunk`` is unused). ``batch``: ``prompts [B, P]`` (right-padded), ``lengths [B]`` and the
    scorer's fields. ``apply`` must
    be hashable (``cat_jax.models.decoder(graphdef)``); ``make_cache(rows, slots)`` builds an empty cache.
    ``reward_transform`` (``cat_jax.weights.TRANSFORMS``, e.g. ``"pkpo_pass"`` with ``transform_k``) reshapes
    the rewards before the advantages (PKPO: the sample-level unbiased pass@k objective); the CAT weights
    always see the verifier's rewards. ``micro_batches``: the update's ``B M`` completions are
    differentiated in that many equal chunks whose gradients are summed (``lax.scan``; the loss is
    ``sum_i L_i / (B M)``, so the sum is the whole batch's gradient): the activation memory of one chunk.
    Chunks hold whole prompt groups when ``micro_batches`` divides ``B`` (each prompt runs once for its
    ``M`` samples, as without micro-batches); otherwise joined prompt + completion rows (every prompt once
    per sample: more compute, the same gradient).
    """
    if not isinstance(rollout, sampling.SampleConfig):
        raise ValueError(f"rollout must be a sampling.SampleConfig, got {type(rollout).__name__}")
    nx.check_int("num_samples", rollout.num_samples, minimum=2)  # group advantages compare M >= 2 rollouts
    transform = wts.get_transform(reward_transform)
    nx.check_int("transform_k", transform_k, minimum=1, maximum=rollout.num_samples)
    nx.check_int("micro_batches", micro_batches, minimum=1)
    loss_fn = losses.make_rl_loss_fn(apply, config=loss, make_cache=make_cache)
    use_history = weights.strategy == "bon" and weights.quantile == "history"

    def rl_step(state: train_lib.TrainState, batch: dict[str, Array], frozen: PyTree = None):
        key = state.step_key()
        params = train_lib.with_frozen(state.params, frozen)
        prompts, lengths = batch["prompts"], batch["lengths"]
        b, p = prompts.shape
        m = rollout.num_samples
        with jax.named_scope("rollout"):  # profiles group the step's ops by these scopes
            out = sampling.sample(
                apply,
                params,
                make_cache(b, p + rollout.max_new_tokens),
                prompts,
                lengths,
                key,
                num_samples=m,
                max_new_tokens=rollout.max_new_tokens,
                strategy=rollout.strategy(),
                stop_tokens=stop_tokens,
                pad_id=pad_id,
            )
        scores = score_fn(out.tokens, out.mask, batch)
        old_logp = jnp.sum(jnp.where(out.mask, out.logp_model, 0.0), axis=-1)
        reference_logp = None
        if weights.probability == "exact" and weights.strategy in ("passn", "majority"):
            if "targets" not in batch or "target_lengths" not in batch:
                raise ValueError(
                    "probability='exact' needs batch['targets'] and batch['target_lengths'] (each prompt's "
                    "reference answer + stop token)"
                )
            reference_logp = jax.lax.stop_gradient(  # one extra forward: teacher-forced, temperature 1
                evaluation.teacher_forced_log_p(
                    apply, params, prompts, lengths, batch["targets"], batch["target_lengths"],
                    jnp.ones((1,), jnp.float32), pad_id=pad_id,
                )[0]
            )  # fmt: skip
        extra = dict(state.extra or {})
        history = extra.get("history") if use_history else None
        w, w_stats = wts.cat_weights(
            scores.rewards,
            old_logp,
            config=weights,
            answer_ids=scores.answer_ids,
            answer_valid=scores.valid,
            history=history,
            reference_logp=reference_logp,
        )
        shaped = transform(scores.rewards, k=transform_k)
        a, a_stats = adv.compute_advantages(shaped, config=advantages)
        rl_batch = {"advantages": a, "weights": w.astype(a.dtype), "num_completions": b * m}
        if b % micro_batches == 0:
            # Shared prompts: each prompt's forward runs once for its M completions (the update's positions
            # drop from B M (P + L) to B P + B M L); micro-batches then split the prompts.
            rl_batch |= {"prompts": prompts, "lengths": lengths, "completions": out.tokens, "mask": out.mask}
            score = lambda p: logprobs.shared_prompt_log_probs(
                apply, p, make_cache, prompts, lengths, out.tokens, out.mask
            )
        else:  # micro-batches that split a prompt's group: joined prompt + completion rows
            tokens, tmask = sampling.join(prompts, lengths, out.tokens, out.mask, pad_id=pad_id)
            rl_batch |= {"tokens": tokens, "mask": tmask}
            score = lambda p: sampling.sequence_log_probs(apply, p, tokens, tmask)
        if loss.surrogate == "clipped":
            # Old policy = the parameters that sampled (one extra forward, same layout as the loss's tokens).
            rl_batch["old_log_probs"] = jax.lax.stop_gradient(score(params))
        if loss.kl_beta > 0:
            rl_batch["ref_log_probs"] = score(train_lib.with_frozen(extra["reference"], frozen))
        grad_fn = jax.value_and_grad(
            lambda p, b, k: loss_fn(train_lib.with_frozen(p, frozen), b, k), has_aux=True
        )
        with jax.named_scope("update"):
            (value, metrics), grads = _accumulate(grad_fn, state.params, rl_batch, key, micro_batches)
        if use_history:
            extra["history"] = history.append(scores.rewards)
        replace = {"extra": extra} if use_history else {}  # only the history changes in extra
        new_state, update_metrics = train_lib.guarded_update(state, tx, value, grads, **replace)
        rewards = scores.rewards
        metrics = {
            **metrics,
            **w_stats,
            **a_stats,
            **update_metrics,
            "reward/mean": jnp.mean(rewards),
            "reward/max_per_prompt": jnp.mean(jnp.max(rewards, axis=-1)),
            "rollout/valid": jnp.mean(scores.valid.astype(jnp.float32)),
            "rollout/length": jnp.mean(out.lengths.astype(jnp.float32)),
            "rollout/old_logp": jnp.mean(old_logp),
        }
        return new_state, metrics

    return rl_step


__all__ = ["RolloutScores", "exact_match_scores", "host_score_fn", "make_rl_step"]
