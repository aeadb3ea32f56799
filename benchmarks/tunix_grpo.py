"""One GRPO step of cat_jax against Tunix's GRPO learner: same tiny Llama, same prompts, same M and length.

Run (Tunix stays out of .venv: it pulls pandas, numba, datasets, ...)::

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]'
    .venv-bench/bin/python -m benchmarks.tunix_grpo   # writes results/benchmarks/tunix_grpo.md

Without google-tunix it prints why and exits 0. Both sides run on one device with the same architecture
(Llama: RMSNorm, RoPE, SwiGLU, untied head; d_model 512, 4 layers, 8 heads, vocab 512; float32, each side
initialised by its own code), the same 8 prompts of 16 tokens, M = 8 completions of at most 16 tokens at
temperature 1, the same reward (1 iff the first generated token is even, so about half the completions score
and the gradients are not zero; cat_jax scores on device, Tunix on the decoded text, as its reward functions
must), group advantages (r - mean) / (std + eps), no KL (beta = 0) and one AdamW update after global-norm
clipping. cat_jax: the jitted :func:`cat_jax.rl.make_rl_step` (strategy standard, REINFORCE: at ratio 1, all
that one update per batch sees, GRPO's clipped surrogate has the same gradient). Tunix: what
``GRPOLearner.train`` does per step (``_generate_and_compute_advantage``, ``RLCluster.update_actor``, the
weight sync when the rollout model holds its own copy), without its data-queue thread and metric export.

Repetitions interleave (cat_jax, Tunix, cat_jax, ...) on this shared machine; medians are reported (and
minima). ``--bf16`` (default on) adds a third interleaved side, cat_jax with bfloat16 matmul inputs
(``LlamaConfig.compute_dtype``), reported beside the float32 headline ratio, never instead of it. Compile
time is reported separately: the first call (compile + one step) minus the fastest step.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.sampler import cpu_name
from cat_jax import advantages as adv
from cat_jax import losses, rl, sampling, train_lib
from cat_jax import weights as wts
from cat_jax.models import llama

VOCAB, D, FF, LAYERS, HEADS, HEAD_DIM = 512, 512, 1536, 4, 8, 64
B, P, M, NEW = 8, 16, 8, 16
STOP, PAD = 1, 0
LR, CLIP = 1e-5, 1.0
OUT = "results/benchmarks/tunix_grpo.md"


def make_prompts():
    rng = np.random.default_rng(0)
    return rng.integers(3, VOCAB, (B, P)).astype(np.int32)


def make_optimizer():
    return optax.chain(optax.clip_by_global_norm(CLIP), optax.adamw(LR))


# ----------------------------------------------------------------------------- cat_jax


class CatJax:
    """The jitted CAT RL step in its GRPO configuration (standard weights, group advantages)."""

    def __init__(self, prompts, compute_dtype: str | None = None):
        self.config = llama.LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=D,
            intermediate_size=FF,
            num_layers=LAYERS,
            num_heads=HEADS,
            num_kv_heads=HEADS,
            head_dim=HEAD_DIM,
            compute_dtype=compute_dtype,  # None: float32 everywhere; "bfloat16": bf16 matmul inputs
        )
        graphdef, params = llama.init(self.config, jax.random.key(0))
        apply = llama.decoder(graphdef)
        tx = make_optimizer()
        self.batch = {"prompts": jnp.asarray(prompts), "lengths": jnp.full((B,), P, jnp.int32)}
        make_cache = functools.partial(llama.init_cache, self.config)
        rollout = sampling.SampleConfig(num_samples=M, max_new_tokens=NEW, temperature=1.0)
        self.step = jax.jit(
            rl.make_rl_step(
                apply,
                tx,
                make_cache,
                rollout=rollout,
                weights=wts.WeightConfig(strategy="standard"),
                advantages=adv.AdvantageConfig(estimator="group"),
                loss=losses.PolicyLossConfig(surrogate="reinforce"),
                score_fn=first_token_even_scores,
                stop_tokens=(STOP,),
                pad_id=PAD,
            ),
            donate_argnums=0,
        )
        self.rollout_only = jax.jit(
            lambda params, key: (
                sampling.sample(
                    apply,
                    params,
                    make_cache(B, P + NEW),
                    self.batch["prompts"],
                    self.batch["lengths"],
                    key,
                    num_samples=M,
                    max_new_tokens=NEW,
                    strategy=rollout.strategy(),
                    stop_tokens=(STOP,),
                    pad_id=PAD,
                ).tokens
            )
        )
        self.state = train_lib.TrainState.create(params, tx, seed=0)

    def run(self) -> dict[str, float]:
        t0 = time.perf_counter()
        self.state, metrics = self.step(self.state, self.batch)
        jax.block_until_ready(metrics["loss/total"])
        t1 = time.perf_counter()
        jax.block_until_ready(self.rollout_only(self.state.params, self.state.step_key()))
        t2 = time.perf_counter()
        return {"step": t1 - t0, "rollout": t2 - t1}


# ----------------------------------------------------------------------------- Tunix


class IntTokenizer:
    """Token ids as space-separated integers: Tunix's rollout and rewards work on text."""

    def encode(self, text, **kwargs):
        return [int(t) for t in text.split()]

    def decode(self, ids, **kwargs):
        return " ".join(str(int(i)) for i in ids)

    def bos_id(self):
        return 0  # falsy: Tunix prepends no BOS, so its prompts are the same 16 tokens as ours

    def eos_id(self):
        return STOP

    def pad_id(self):
        return PAD


def first_token_even(prompts, completions, **kwargs):
    """Tunix reward function (host, on decoded text): 1 if the first generated token is even."""
    del prompts, kwargs
    return [float(bool(c) and int(c.split()[0]) % 2 == 0) for c in completions]


def first_token_even_scores(tokens, mask, batch) -> rl.RolloutScores:
    """The same reward in cat_jax (on device): 1 if the first generated token is even."""
    del batch
    rewards = (mask[..., 0] & (tokens[..., 0] % 2 == 0)).astype(jnp.float32)
    ids = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), rewards.shape)
    return rl.RolloutScores(rewards=rewards, answer_ids=ids, valid=mask[..., 0])


class Tunix:
    """Tunix 0.1.7: Llama3 model, vanilla rollout, RLCluster and GRPOLearner on one device."""

    def __init__(self, prompts):
        from flax import nnx
        from tunix.models.llama3 import model as tlm
        from tunix.rl import rl_cluster as rlc
        from tunix.rl.grpo import grpo_learner
        from tunix.rl.rollout import base_rollout

        self.nnx = nnx
        cfg = tlm.ModelConfig(
            num_layers=LAYERS,
            vocab_size=VOCAB,
            embed_dim=D,
            hidden_dim=FF,
            num_heads=HEADS,
            head_dim=HEAD_DIM,
            num_kv_heads=HEADS,
            rope_theta=10_000,
            norm_eps=1e-6,
        )
        # Auto axes: Tunix's attention mixes sharded and unsharded operands, which Explicit axes reject.
        auto = (jax.sharding.AxisType.Auto,) * 2
        mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), axis_types=auto, devices=jax.devices()[:1])
        model = tlm.Llama3(cfg, rngs=nnx.Rngs(0))  # RLCluster places it on the mesh
        roles = {rlc.Role.ACTOR: mesh, rlc.Role.REFERENCE: mesh, rlc.Role.ROLLOUT: mesh}
        cluster_config = rlc.ClusterConfig(
            role_to_mesh=roles,
            rollout_engine="vanilla",
            offload_to_cpu=False,
            training_config=rlc.RLTrainingConfig(
                actor_optimizer=make_optimizer(), eval_every_n_steps=10**9, max_steps=10**9
            ),
            rollout_config=base_rollout.RolloutConfig(
                max_tokens_to_generate=NEW,
                max_prompt_length=P,
                kv_cache_size=P + NEW,
                temperature=1.0,
                top_p=1.0,  # Tunix's only stochastic sampler is top-p; p = 1 keeps the full distribution
                top_k=None,
                eos_tokens=[STOP],
            ),
        )
        self.cluster = rlc.RLCluster(actor=model, tokenizer=IntTokenizer(), cluster_config=cluster_config)
        self.learner = grpo_learner.GRPOLearner(
            rl_cluster=self.cluster,
            algo_config=grpo_learner.GRPOConfig(num_generations=M, num_iterations=1, beta=0.0, epsilon=0.2),
            reward_fns=first_token_even,
        )
        # GRPOLearner.train sets these from the batch size (B prompts) before its first step.
        self.learner._rollout_micro_batch_size = B
        self.learner._compute_logps_micro_batch_size = B
        tok = IntTokenizer()
        # GRPOLearner repeats each prompt num_generations times before generating (prompt-major).
        self.inputs = {"prompts": [tok.decode(p) for p in np.repeat(prompts, M, axis=0)]}
        self._generate_s = 0.0
        generate = self.cluster.generate

        def timed_generate(*args, **kwargs):
            t = time.perf_counter()
            out = generate(*args, **kwargs)  # returns host lists: already synchronised
            self._generate_s = time.perf_counter() - t
            return out

        self.cluster.generate = timed_generate

    def run(self) -> dict[str, float]:
        nnx = self.nnx
        t0 = time.perf_counter()
        example = self.learner._generate_and_compute_advantage(dict(self.inputs))
        jax.block_until_ready((example.advantages, example.completion_ids))
        t1 = time.perf_counter()
        self.cluster.update_actor([example], None, False)
        # As GRPOLearner.train ends each step: copy the weights to the rollout model if it holds its own.
        if self.learner.should_sync_weights:
            self.cluster.sync_weights()  # also advances global_steps
        else:
            self.cluster.global_steps += 1
        jax.block_until_ready(nnx.state(self.cluster.rollout.model(), nnx.Param))
        t2 = time.perf_counter()
        return {
            "step": t2 - t0,
            "rollout": self._generate_s,
            "scoring": t1 - t0 - self._generate_s,
            "update": t2 - t1,
        }


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repetitions after the first call")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run cat_jax with bfloat16 matmul inputs (a third interleaved side; Tunix stays float32)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    try:
        import tunix
    except ImportError as e:
        print(
            f"google-tunix is not importable ({e}); skipping the Tunix GRPO comparison. Install it in a "
            "separate venv: python3 -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]'"
        )
        return 0
    from importlib.metadata import version

    tunix_version = version("google-tunix")
    del tunix
    load_start = os.getloadavg()[0]
    prompts = make_prompts()
    sides = {"cat_jax": CatJax(prompts), "tunix": Tunix(prompts)}
    if args.bf16:
        sides["cat_jax_bf16"] = CatJax(prompts, compute_dtype="bfloat16")
    first = {k: side.run() for k, side in sides.items()}
    runs = {k: [] for k in sides}
    for i in range(args.repeats):
        for k, side in sides.items():
            runs[k].append(side.run())
        print(f"rep {i}: " + ", ".join(f"{k} {runs[k][-1]['step']:.3f} s" for k in sides))
    load_end = os.getloadavg()[0]
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in runs.items()}
    best = {k: min(r["step"] for r in v) for k, v in runs.items()}
    # The least-loaded repetition is the closest to the step's own cost; the first call had to compile too.
    compile_s = {k: first[k]["step"] - best[k] for k in runs}
    ratio = med["tunix"]["step"] / med["cat_jax"]["step"]
    ratios = [t["step"] / c["step"] for c, t in zip(runs["cat_jax"], runs["tunix"], strict=True)]
    if args.bf16:
        pairs = zip(runs["cat_jax_bf16"], runs["tunix"], strict=True)
        bf16_ratio = statistics.median(t["step"] / c["step"] for c, t in pairs)
    tokens = B * M * NEW

    def row(name, k):
        m = med[k]
        split = " | ".join(
            f"{m[f]:.3f} ({m[f] / m['step']:.0%})" if f in m else "-"
            for f in ("rollout", "scoring", "update")
        )
        return (
            f"| {name} | {first[k]['step']:.1f} | {compile_s[k]:.1f} | {m['step']:.3f} | {best[k]:.3f} | "
            f"{tokens / m['step']:.0f} | {split} |"
        )

    lines = [
        "# One GRPO step: cat_jax vs Tunix",
        "",
        "Command: `.venv-bench/bin/python -m benchmarks.tunix_grpo` (venv: `python3 -m venv .venv-bench && "
        ".venv-bench/bin/pip install -e '.[bench]'`)",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()}, jax {jax.__version__}, backend "
        f"{jax.default_backend()} (1 device), google-tunix {tunix_version}. Shared machine: repetitions "
        f"interleave cat_jax, Tunix, cat_jax, ...; medians of {args.repeats}. XLA_FLAGS "
        f"`{os.environ.get('XLA_FLAGS', '').strip()}`, no core pinning: both sides (both JAX) share every "
        f"core. Load average (1 min) at start / end: {load_start:.1f} / "
        f"{load_end:.1f} on {os.cpu_count()} cores: single timings swing, compare interleaved ratios.",
        f"Model: Llama (RMSNorm, RoPE, SwiGLU, untied head), d_model {D}, {LAYERS} layers, {HEADS} heads of "
        f"{HEAD_DIM}, MLP {FF}, vocab {VOCAB}, float32 (parameters and compute; the bfloat16 row: matmul "
        f"inputs only), each side initialised by its own code. Batch: {B} "
        f"prompts x {P} tokens, M = {M} completions of at most {NEW} tokens (temperature 1, stop token "
        f"{STOP}), reward 1 iff the first generated token is even, group advantages, beta = 0 (no KL), "
        f"AdamW lr {LR} after global-norm clip {CLIP}.",
        "",
        "| | first call (s) | compile = first - min (s) | step (s, median) | step (s, min) | "
        "generated tokens/s (median) | rollout (s) | scoring + advantages (s) | update (s) |",
        "|---|---|---|---|---|---|---|---|---|",
        row("cat_jax `rl.make_rl_step` (one jitted function), float32", "cat_jax"),
        row("Tunix `GRPOLearner` (rollout, rewards, `update_actor`), float32", "tunix"),
        *([row("cat_jax, bfloat16 matmul inputs (float32 parameters)", "cat_jax_bf16")] if args.bf16 else []),
        "",
        f"**Tunix / cat_jax step time: {ratio:.2f}x, both float32** (ratio of the medians; of the minima "
        f"{best['tunix'] / best['cat_jax']:.2f}x; per-repetition ratios: median "
        f"{statistics.median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}). Above 1: cat_jax is "
        "faster.",
        *(
            [
                "",
                "cat_jax with bfloat16 matmul inputs (`LlamaConfig.compute_dtype`, a policy: float32 "
                "parameters, gradients, optimizer, norms, softmax and loss) against Tunix in float32 (its "
                "Llama3 has no compute-dtype setting): "
                f"{med['tunix']['step'] / med['cat_jax_bf16']['step']:.2f}x (medians; per repetition "
                f"{bf16_ratio:.2f}x). Not the same arithmetic: reported beside the float32 ratio, not "
                "instead of it.",
            ]
            if args.bf16
            else []
        ),
        "",
        "What is and is not the same:",
        "",
        "- cat_jax's rollout column is a separate jitted call of the sampler alone (same settings), timed "
        "right after each step: a share of the step, not part of its measured time. Scoring, advantages "
        "and the update run inside the one jitted step and are not split here (`train_steps.md` splits "
        "them).",
        "- Tunix's columns are parts of its step: `RLCluster.generate` (prefill and decode of every row, "
        "host-side trimming at the stop token, decoding to text); rewards on the text in Python and "
        "advantages in numpy; `update_actor` (its PeftTrainer step: recomputes per-token log-probs, clipped "
        "token-level GRPO loss at ratio 1, `sequence-mean-token-mean` aggregation).",
        "- cat_jax prefills each prompt once and decodes its M samples from the shared cache; Tunix repeats "
        "every prompt M times and prefills each copy. Likewise in the update: cat_jax runs each prompt's "
        "forward and backward once for its M completions (`logprobs.shared_prompt_log_probs`: prompt KV "
        "cache repeated over the group, gradients summed back; the same log-probs as the joined rows), "
        "Tunix recomputes the prompt in each of the M rows.",
        "- cat_jax samples categorically at temperature 1; Tunix's only stochastic sampler is top-p, run "
        "with p = 1 (the same distribution, plus a sort over the vocabulary per token).",
        "- cat_jax's loss is REINFORCE with CAT weights 1: GRPO's gradient at ratio 1 up to the per-sequence "
        "token normalisation (cat_jax sums a completion's log-probs, Tunix averages them).",
        "- The weights differ, so the sampled tokens differ; both decode loops run all 16 steps unless "
        "every row has stopped.",
        "",
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
