"""Tiny models shared by tests and CPU examples (cached, so a test session initialises each config once)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import numpy as np
from flax import nnx

from cat_jax.models import llama


class TinyModel(NamedTuple):
    config: llama.LlamaConfig
    graphdef: nnx.GraphDef
    params: nnx.State
    apply: llama.Decoder


@functools.lru_cache(maxsize=8)
def tiny_model(seed: int = 0, **overrides) -> TinyModel:
    """A random ``LlamaConfig.tiny(**overrides)`` decoder, its params and its hashable logits function.

    Random init at std 0.02 gives near-uniform logits; the weights are scaled up so that samples and greedy
    paths differ between prompts (a more realistic, peaked next-token distribution).
    """
    config = llama.LlamaConfig.tiny(**overrides)
    graphdef, params = llama.init(config, jax.random.key(seed))
    params = jax.tree.map(lambda x: x * 8 if x.ndim == 2 else x, params)
    return TinyModel(config, graphdef, params, llama.decoder(graphdef))


def ragged_sequences() -> tuple[np.ndarray, np.ndarray]:
    """Four right-padded sequences of unequal lengths (pad id 0), ``tokens`` and ``labels`` ``[4, L]``: each
    a prompt (labels -100, unsupervised) then a completion (labels = its tokens)."""
    rows = [([3, 4], [5, 6, 7]), ([2], [9, 1]), ([8, 8, 3], [4, 2, 6, 5]), ([1, 2], [3])]
    length = max(len(p) + len(c) for p, c in rows)
    tokens = np.zeros((4, length), np.int32)
    labels = np.full((4, length), -100, np.int32)
    for i, (p, c) in enumerate(rows):
        seq = p + c
        tokens[i, : len(seq)] = seq
        labels[i, len(p) : len(seq)] = c
    return tokens, labels


# ----------------------------------------------------------------------------- tiny pretrained checkpoints

# The chat templates of three checkpoint families, as their tokenizer_config.json files carry them.
CHAT_TEMPLATES = {
    # Meta-Llama-3-8B-Instruct.
    "llama": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
        "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
        "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
        "{{ content }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    # Mistral-7B-Instruct-v0.2: writes BOS itself.
    "mistral": (
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
        "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
        "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
        "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
        "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
        "are supported!') }}{% endif %}{% endfor %}"
    ),
    # Qwen2-Instruct.
    "qwen2": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
}
# family -> (special tokens, bos, eos); the first special token of each family is its BOS or pad.
_SPECIALS = {
    "llama": (
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|begin_of_text|>",
        "<|end_of_text|>",
    ),
    "mistral": (["<s>", "</s>"], "<s>", "</s>"),
    "qwen2": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>"),
    "gpt2": (["<|endoftext|>"], "<|endoftext|>", "<|endoftext|>"),
}


def write_tokenizer(path, family: str) -> dict[str, int]:
    """A character-level ``tokenizer.json`` (printable ASCII + the family's special tokens) and a
    ``tokenizer_config.json`` with the family's chat template, in ``path``; returns the special ids.

    The Mistral tokenizer's post-processor adds BOS, as Llama-2-style checkpoints do: with a template that
    writes BOS itself, encoding the rendered text *with* special tokens would give two.
    """
    import json
    import pathlib
    import string

    from tokenizers import Tokenizer, decoders, models, processors

    specials, bos, eos = _SPECIALS[family]
    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    tok = Tokenizer(models.BPE(vocab={"<unk>": 0, **{c: i + 1 for i, c in enumerate(chars)}}, merges=[]))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(specials)
    ids = {s: tok.token_to_id(s) for s in specials}
    if family == "mistral":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, ids[bos])]
        )
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    cfg = {"bos_token": bos, "eos_token": eos, "tokenizer_class": "PreTrainedTokenizerFast"}
    if family in CHAT_TEMPLATES:
        cfg["chat_template"] = CHAT_TEMPLATES[family]
    if family == "qwen2":
        cfg["pad_token"] = "<|endoftext|>"
    (path / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    return ids


def write_checkpoint(path, family: str = "llama", *, seed: int = 0, padded_vocab: int = 128, **overrides):
    """A tiny random Hugging Face checkpoint directory of ``family`` (llama | mistral | qwen2 | gpt2):
    config.json, model.safetensors, generation_config.json and :func:`write_tokenizer`'s files; the embedding
    has ``padded_vocab`` rows, more than the tokenizer's ids (the padding rows real checkpoints carry)."""
    import dataclasses
    import json
    import pathlib

    from cat_jax.models import convert

    path = pathlib.Path(path)
    ids = write_tokenizer(path, family)
    _, bos, eos = _SPECIALS[family]
    if family == "gpt2":
        return _write_gpt2(path, ids[eos], seed=seed, padded_vocab=padded_vocab, **overrides)
    base = dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2)
    config = llama.LlamaConfig.tiny(
        vocab_size=padded_vocab, qkv_bias=family == "qwen2", **{**base, **overrides}
    )
    _, params = llama.init(config, jax.random.key(seed))
    params = jax.tree.map(lambda x: x * 4 if x.ndim == 2 else x, params)  # peaked, not uniform, logits
    convert.save(str(path), config, params)
    hf = json.loads((path / "config.json").read_text())
    if family == "mistral":
        hf.update(architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=None)
    hf.update(bos_token_id=ids.get(bos), eos_token_id=ids[eos])
    (path / "config.json").write_text(json.dumps(hf, indent=1))
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": ids[eos]}))
    return dataclasses.replace(config)


def _write_gpt2(path, eos_id: int, *, seed: int, padded_vocab: int, **overrides):
    """A tiny ``GPT2LMHeadModel`` (ProtGPT2's family): ``<|endoftext|>`` is BOS, EOS and (unnamed) pad."""
    import json

    from cat_jax.models import convert, gpt2

    base = dict(hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=128)
    config = gpt2.GPT2Config.tiny(vocab_size=padded_vocab, **{**base, **overrides})
    _, params = gpt2.init(config, jax.random.key(seed))
    params = jax.tree.map(lambda x: x * 4 if x.ndim == 2 else x, params)  # peaked, not uniform, logits
    convert.save(str(path), config, params)
    hf = json.loads((path / "config.json").read_text())
    hf.update(bos_token_id=eos_id, eos_token_id=eos_id)
    (path / "config.json").write_text(json.dumps(hf, indent=1))
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": eos_id}))
    return config


def write_math_jsonl(path, *, num_train: int = 24, num_test: int = 8, seed: int = 0) -> None:
    """MATH-format ``train.jsonl`` / ``test.jsonl`` (problem, boxed solution, answer, level) of small
    additions in ``path``: a manual_dir for the ``math_jsonl`` builder (levels cycle 1..5)."""
    import json
    import pathlib

    rng = np.random.default_rng(seed)
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    seen = set()
    for split, count in (("train", num_train), ("test", num_test)):
        rows = []
        while len(rows) < count:
            a, b = (int(x) for x in rng.integers(1, 50, size=2))
            if (a, b) in seen:
                continue
            seen.add((a, b))
            rows.append(
                {
                    "problem": f"What is ${a}+{b}$?",
                    "solution": f"${a}+{b}={a + b}$, so the answer is $\\boxed{{{a + b}}}$.",
                    "answer": str(a + b),
                    "level": f"Level {1 + len(rows) % 5}",
                }
            )
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------- multi-process runs on one host


class ProcessRun(NamedTuple):
    """One process of :func:`launch`: its index, exit code and captured output."""

    process_id: int
    returncode: int
    stdout: str
    stderr: str


def free_port() -> int:
    """A TCP port free on localhost now (for a coordinator address)."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_processes(
    argv: list[str],
    *,
    num_processes: int = 2,
    devices_per_process: int = 2,
    cwd=None,
    env: dict[str, str] | None = None,
    port: int | None = None,
):
    """Start ``num_processes`` CPU processes of one ``jax.distributed`` run on this host: ``argv`` (a
    program that calls ``experiments.cli.setup``, e.g. ``[sys.executable, "-m", "experiments.sft", ...]``)
    with ``--coordinator_address=localhost:<port> --num_processes=n --process_id=i`` appended, each
    process seeing ``devices_per_process`` CPU devices (``XLA_FLAGS``); returns the ``subprocess.Popen``
    list, their output captured in files (``.stdout_path`` / ``.stderr_path`` on each). Collect them with
    :func:`wait_processes`."""
    import os
    import subprocess
    import tempfile

    port = free_port() if port is None else port
    base = {**os.environ, **(env or {}), "JAX_PLATFORMS": "cpu"}
    flags = (
        base.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices_per_process}"
    ).strip()
    base["XLA_FLAGS"] = flags
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        base.pop(var, None)
    out = tempfile.mkdtemp(prefix="cat_jax_procs_")
    procs = []
    for i in range(num_processes):
        args = [
            *argv,
            f"--coordinator_address=localhost:{port}",
            f"--num_processes={num_processes}",
            f"--process_id={i}",
        ]
        stdout, stderr = f"{out}/p{i}.out", f"{out}/p{i}.err"
        with open(stdout, "w") as o, open(stderr, "w") as e:
            proc = subprocess.Popen(args, cwd=cwd, env=base, stdout=o, stderr=e, start_new_session=True)
        proc.stdout_path, proc.stderr_path = stdout, stderr
        procs.append(proc)
    return procs


def wait_processes(procs, *, timeout: float | int = 600) -> list[ProcessRun]:
    """Wait for :func:`start_processes`' processes (``timeout`` seconds for all of them together); any still
    running then, and every process once one has failed and the others outlive it by 60 s (a peer blocked
    in a collective never returns), is killed. Returns one :class:`ProcessRun` per process; a killed
    process has a negative ``returncode``."""
    import pathlib
    import time

    deadline = time.monotonic() + timeout
    failed_at = None
    while any(p.poll() is None for p in procs):
        now = time.monotonic()
        if failed_at is None and any(p.poll() not in (None, 0) for p in procs):
            failed_at = now
        if now > deadline or (failed_at is not None and now > failed_at + 60):
            for p in procs:
                if p.poll() is None:
                    p.kill()
            break
        time.sleep(0.2)
    for p in procs:
        p.wait()
    return [
        ProcessRun(
            i,
            p.returncode,
            pathlib.Path(p.stdout_path).read_text(),
            pathlib.Path(p.stderr_path).read_text(),
        )
        for i, p in enumerate(procs)
    ]


def launch(argv: list[str], *, timeout: float | int = 600, **kwargs) -> list[ProcessRun]:
    """:func:`start_processes` then :func:`wait_processes`: a whole multi-process run, its outputs."""
    return wait_processes(start_processes(argv, **kwargs), timeout=timeout)
