"""Hugging Face checkpoints <-> cat_jax params: local directories, safetensors, no torch at run time.

A directory holds ``config.json`` and either ``model.safetensors`` or shards listed in
``model.safetensors.index.json``; ``tokenizer.json``, when present, is loaded as a
``cat_jax.tasks.tokenizers.HFTokenizer``. Supported architectures: ``LlamaForCausalLM`` (Llama 2/3, with
Llama 3 RoPE scaling), ``MistralForCausalLM`` (no sliding window), ``Qwen2ForCausalLM`` (q/k/v bias, no
sliding window) -> :class:`~cat_jax.models.llama.LlamaConfig`, and ``GPT2LMHeadModel`` (GPT-2, ProtGPT2)
-> :class:`~cat_jax.models.gpt2.GPT2Config`. A config field cat_jax does not implement, or implements only
with another value, raises ``ValueError``; nothing is ignored silently except the metadata listed in
``METADATA_FIELDS`` (and, for GPT-2, ``GPT2_IGNORED_FIELDS``: dropout rates of the original training run and
the sequence-summary head of ``GPT2DoubleHeadsModel``; cat_jax trains without dropout).

Llama-family linear weights are stored ``[out, in]`` by HF; cat_jax kernels are ``[in, out]`` (transposed on
load and save). GPT-2's ``Conv1D`` weights are already ``[in, out]`` (no transpose); its tied ``lm_head`` and
the ``attn.bias`` / ``attn.masked_bias`` mask buffers of older checkpoints are skipped on load, and a
leading ``transformer.`` (absent from checkpoints saved from ``GPT2Model``) is optional.

:func:`save` writes a directory that :func:`load` and ``transformers`` read; :func:`export` also copies the
tokenizer files from a source checkpoint (the target of ``experiments.export``).

Tensors are read with the ``safetensors`` numpy API; bfloat16 tensors, which that API cannot represent, are
read and written through the same file format with ``ml_dtypes.bfloat16`` numpy arrays.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from cat_jax.models import gpt2, llama
from cat_jax.tasks.chat import TokenizerConfig, load_tokenizer_config
from cat_jax.tasks.tokenizers import HFTokenizer

ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "GPT2LMHeadModel": "gpt2",
}
# Describe the checkpoint or the HF runtime; they do not change the forward pass.
METADATA_FIELDS = frozenset(
    {
        "architectures",
        "model_type",
        "torch_dtype",
        "dtype",
        "transformers_version",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "initializer_range",
        "use_cache",
        "_name_or_path",
        "return_dict",
        "output_attentions",
        "output_hidden_states",
        "torchscript",
        "tie_encoder_decoder",
        "chunk_size_feed_forward",
        "is_encoder_decoder",
        "id2label",
        "label2id",
        "problem_type",
        "tokenizer_class",
        "bad_words_ids",
    }
)
# Fields whose only supported values are listed (anything else changes the maths).
REQUIRED_VALUES = {
    "hidden_act": ("silu",),
    "attention_bias": (False,),
    "mlp_bias": (False,),
    "pretraining_tp": (1,),
    "attention_dropout": (0, 0.0),
    "use_sliding_window": (False,),
    "sliding_window": (None,),
}
USED_FIELDS = frozenset(
    {
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "max_position_embeddings",
        "tie_word_embeddings",
        "rope_theta",
        "rope_parameters",
        "rope_scaling",
        "layer_types",
        "max_window_layers",
    }
)
# GPT-2 (GPT2LMHeadModel): fields read, fields whose only supported values are listed, and fields that do not
# change the inference forward pass (dropout rates of the original run: cat_jax has no dropout; the
# sequence-summary head belongs to GPT2DoubleHeadsModel, not to the LM).
GPT2_USED_FIELDS = frozenset(
    {"vocab_size", "n_embd", "n_layer", "n_head", "n_inner", "n_positions", "n_ctx", "layer_norm_epsilon"}
)
GPT2_REQUIRED_VALUES = {
    "activation_function": ("gelu_new", "gelu_pytorch_tanh"),  # both the tanh approximation of GELU
    "scale_attn_weights": (True,),
    "scale_attn_by_inverse_layer_idx": (False,),
    "reorder_and_upcast_attn": (False,),
    "add_cross_attention": (False,),
    "tie_word_embeddings": (True,),
}
GPT2_IGNORED_FIELDS = frozenset(
    {
        "attn_pdrop",
        "embd_pdrop",
        "resid_pdrop",
        "summary_type",
        "summary_use_proj",
        "summary_activation",
        "summary_proj_to_labels",
        "summary_first_dropout",
        "task_specific_params",
        "gradient_checkpointing",
    }
)
# Files export() copies from a source checkpoint when present (tokenizer, chat template, stop tokens).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F64": np.float64}


Config = llama.LlamaConfig | gpt2.GPT2Config


def family(config: Config):
    """The model module (:mod:`~cat_jax.models.llama` or :mod:`~cat_jax.models.gpt2`) of a config
    (re-exported as ``cat_jax.models.family``)."""
    if isinstance(config, gpt2.GPT2Config):
        return gpt2
    if isinstance(config, llama.LlamaConfig):
        return llama
    raise ValueError(f"config must be a LlamaConfig or a GPT2Config, got {type(config).__name__}")


# Config fields that describe the stored weights: load() cannot override them.
_WEIGHT_FIELDS = frozenset(
    {"vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "head_dim"}
)


class Checkpoint(NamedTuple):
    config: Config  # LlamaConfig or GPT2Config
    graphdef: nnx.GraphDef
    params: nnx.State
    apply: llama.Decoder
    eos_token_ids: tuple[int, ...]  # stop tokens for the sampler, from config.json / generation_config.json
    tokenizer: HFTokenizer | None  # None without tokenizer.json; .backend is the tokenizers.Tokenizer
    # tokenizer_config.json: chat template, bos/eos/pad strings, added-token flags (empty when absent).
    tokenizer_config: TokenizerConfig | None = None


def _rope(hf: dict) -> tuple[float, tuple | None]:
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    theta = float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        return theta, (*(float(rope[k]) for k in keys[:3]), int(rope[keys[3]]))
    raise ValueError(
        f"RoPE type {kind!r} is not supported (only 'default' and 'llama3'); convert another model"
    )


def _gpt2_config_from_hf(hf: dict, param_dtype: str) -> gpt2.GPT2Config:
    for name, value in hf.items():
        if name in METADATA_FIELDS or name in GPT2_USED_FIELDS or name in GPT2_IGNORED_FIELDS:
            continue
        if name in GPT2_REQUIRED_VALUES:
            if value not in GPT2_REQUIRED_VALUES[name]:
                raise ValueError(
                    f"config.json field {name}={value!r} is not supported by cat_jax's GPT-2 (allowed: "
                    f"{GPT2_REQUIRED_VALUES[name]}); use a checkpoint without it"
                )
            continue
        raise ValueError(
            f"unsupported config.json field {name}={value!r} for GPT2LMHeadModel; cat_jax would ignore it, "
            "so it refuses"
        )
    missing = [k for k in ("vocab_size", "n_embd", "n_layer", "n_head") if k not in hf]
    if missing:
        raise ValueError(f"config.json of a GPT2LMHeadModel lacks the field(s) {missing}")
    positions = hf.get("n_positions", 1024)
    if hf.get("n_ctx", positions) != positions:
        raise ValueError(f"config.json has n_ctx={hf['n_ctx']} != n_positions={positions}; cat_jax needs one")
    return gpt2.GPT2Config(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["n_embd"],
        num_layers=hf["n_layer"],
        num_heads=hf["n_head"],
        intermediate_size=hf.get("n_inner"),
        max_position_embeddings=positions,
        layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        param_dtype=param_dtype,
    )


def config_from_hf(hf: dict, *, param_dtype: str = "float32") -> Config:
    """A :class:`LlamaConfig` or :class:`GPT2Config` from a parsed ``config.json`` (by its
    ``architectures``); unsupported fields raise ``ValueError``."""
    archs = hf.get("architectures") or []
    if len(archs) != 1 or archs[0] not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {archs!r}; cat_jax converts exactly one of {sorted(ARCHITECTURES)}"
        )
    kind = ARCHITECTURES[archs[0]]
    if kind == "gpt2":
        return _gpt2_config_from_hf(hf, param_dtype)
    for name, value in hf.items():
        if name in METADATA_FIELDS or name in USED_FIELDS:
            continue
        if name == "sliding_window" and kind == "qwen2" and not hf.get("use_sliding_window", False):
            continue  # Qwen2 only uses the window when use_sliding_window is true.
        if name in REQUIRED_VALUES:
            if value not in REQUIRED_VALUES[name]:
                raise ValueError(
                    f"config.json field {name}={value!r} is not supported by cat_jax (allowed: "
                    f"{REQUIRED_VALUES[name]}); use a checkpoint without it"
                )
            continue
        raise ValueError(
            f"unsupported config.json field {name}={value!r}; cat_jax would ignore it, so it refuses"
        )
    if any(t != "full_attention" for t in hf.get("layer_types") or ()):
        raise ValueError(
            f"layer_types {hf['layer_types']} has non-full attention layers; cat_jax has no sliding window"
        )
    theta, scaling = _rope(hf)
    heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim")
    if head_dim == hf["hidden_size"] // heads:
        head_dim = None  # the default: one canonical config (and graphdef) per architecture
    return llama.LlamaConfig(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=head_dim,
        rope_theta=theta,
        rope_scaling=scaling,
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        qkv_bias=kind == "qwen2",
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        param_dtype=param_dtype,
    )


def _gpt2_config_to_hf(config: gpt2.GPT2Config) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_embd": config.hidden_size,
        "n_layer": config.num_layers,
        "n_head": config.num_heads,
        "n_inner": config.intermediate_size,
        "n_positions": config.max_position_embeddings,
        "layer_norm_epsilon": config.layer_norm_eps,
        "activation_function": "gelu_new",
        "tie_word_embeddings": True,
        # cat_jax trained without dropout; transformers would otherwise default every rate to 0.1.
        "attn_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "resid_pdrop": 0.0,
        # Explicit nulls: transformers would default both to GPT-2's 50256 (export() copies the real ids).
        "bos_token_id": None,
        "eos_token_id": None,
        "dtype": config.param_dtype,
    }


def config_to_hf(config: Config) -> dict:
    """``config.json`` contents for a config (GPT-2; Qwen2 when it has q/k/v bias; else Llama)."""
    if family(config) is gpt2:
        return _gpt2_config_to_hf(config)
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling is not None:
        f, lo, hi, old = config.rope_scaling
        rope.update(rope_type="llama3", factor=f, low_freq_factor=lo, high_freq_factor=hi)
        rope["original_max_position_embeddings"] = old
    arch = "Qwen2ForCausalLM" if config.qkv_bias else "LlamaForCausalLM"
    return {
        "architectures": [arch],
        "model_type": ARCHITECTURES[arch],
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.dim_head,
        "hidden_act": "silu",
        "rms_norm_eps": config.rms_norm_eps,
        "max_position_embeddings": config.max_position_embeddings,
        "tie_word_embeddings": config.tie_embeddings,
        "rope_parameters": rope,
        "dtype": config.param_dtype,
    }


def _gpt2_names(config: gpt2.GPT2Config) -> dict[str, tuple[tuple, bool]]:
    names: dict[str, tuple[tuple, bool]] = {
        "transformer.wte.weight": (("wte",), False),
        "transformer.wpe.weight": (("wpe",), False),
        "transformer.ln_f.weight": (("ln_f", "scale"), False),
        "transformer.ln_f.bias": (("ln_f", "bias"), False),
    }
    for i in range(config.num_layers):
        pre = f"transformer.h.{i}."
        for norm in ("ln_1", "ln_2"):
            names[f"{pre}{norm}.weight"] = (("h", i, norm, "scale"), False)
            names[f"{pre}{norm}.bias"] = (("h", i, norm, "bias"), False)
        for block, proj in (("attn", "c_attn"), ("attn", "c_proj"), ("mlp", "c_fc"), ("mlp", "c_proj")):
            for hf, ours in (("weight", "kernel"), ("bias", "bias")):
                names[f"{pre}{block}.{proj}.{hf}"] = (("h", i, block, proj, ours), False)  # Conv1D: [in, out]
    return names


def _hf_names(config: Config) -> dict[str, tuple[tuple, bool]]:
    """HF tensor name -> (path in the cat_jax pure dict, transpose)."""
    if isinstance(config, gpt2.GPT2Config):
        return _gpt2_names(config)
    names: dict[str, tuple[tuple, bool]] = {"model.embed_tokens.weight": (("embed",), False)}
    names["model.norm.weight"] = (("norm", "scale"), False)
    if not config.tie_embeddings:
        names["lm_head.weight"] = (("lm_head", "kernel"), True)
    for i in range(config.num_layers):
        pre = f"model.layers.{i}."
        for hf, ours in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("o_proj", "o")):
            names[f"{pre}self_attn.{hf}.weight"] = (("layers", i, "attn", ours, "kernel"), True)
            if config.qkv_bias and ours != "o":
                names[f"{pre}self_attn.{hf}.bias"] = (("layers", i, "attn", ours, "bias"), False)
        for hf in ("gate", "up", "down"):
            names[f"{pre}mlp.{hf}_proj.weight"] = (("layers", i, "mlp", hf, "kernel"), True)
        names[f"{pre}input_layernorm.weight"] = (("layers", i, "attn_norm", "scale"), False)
        names[f"{pre}post_attention_layernorm.weight"] = (("layers", i, "mlp_norm", "scale"), False)
    return names


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    import safetensors.numpy  # imported on use: cat_jax.models must import without the checkpoint extras

    try:
        return safetensors.numpy.load_file(path)
    except TypeError:
        pass  # bfloat16 (numpy has no such dtype): read the same format by hand, memory-mapped.
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in SAFETENSORS_DTYPES:
            raise ValueError(
                f"tensor {name} has dtype {info['dtype']}; cat_jax reads {sorted(SAFETENSORS_DTYPES)}"
            )
        start, end = info["data_offsets"]
        out[name] = data[start:end].view(SAFETENSORS_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def _write_safetensors(tensors: dict[str, np.ndarray], path: str) -> None:
    if all(t.dtype != ml_dtypes.bfloat16 for t in tensors.values()):
        import safetensors.numpy

        safetensors.numpy.save_file(tensors, path, metadata={"format": "pt"})
        return
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset, blobs = 0, []
    for name, t in tensors.items():
        blob = np.ascontiguousarray(t).tobytes()
        dtype = {v: k for k, v in SAFETENSORS_DTYPES.items()}[t.dtype.type]
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the data section to 8 bytes
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for blob in blobs:
            f.write(blob)


def _weight_files(path: str) -> list[str]:
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(path, name) for name in files]
    single = os.path.join(path, "model.safetensors")
    if not os.path.exists(single):
        raise ValueError(f"{path} has neither model.safetensors nor model.safetensors.index.json")
    return [single]


def load_tokenizer(
    path: str,
    vocab_size: int | None = None,
    *,
    bos_token: int | None = None,
    eos_token: int | None = None,
    pad_token: str | None = None,
) -> HFTokenizer | None:
    """:class:`~cat_jax.tasks.tokenizers.HFTokenizer` of ``path/tokenizer.json`` (None if absent), checked
    against the model's ``vocab_size``; ``bos_token`` / ``eos_token`` ids frame ``encode(..., bos, eos)``;
    ``pad_token`` (tokenizer_config.json's) pads, else EOS (SPEC §3.1)."""
    file = os.path.join(path, "tokenizer.json")
    if not os.path.exists(file):
        return None
    return HFTokenizer(file, bos_token, eos_token, vocab_size=vocab_size, pad_token=pad_token)


def _first_id(value) -> int | None:
    """A config.json token id field (an id, a list of ids or null) -> its first id."""
    if isinstance(value, list):
        return value[0] if value else None
    return value if isinstance(value, int) else None


def _eos_ids(path: str, hf: dict) -> tuple[int, ...]:
    ids: list[int] = []
    gen = os.path.join(path, "generation_config.json")
    for source in (hf, json.load(open(gen)) if os.path.exists(gen) else {}):
        value = source.get("eos_token_id")
        ids += [] if value is None else [value] if isinstance(value, int) else list(value)
    return tuple(sorted(set(ids)))


def load(path: str, *, param_dtype: str = "float32", **overrides) -> Checkpoint:
    """A local HF directory -> config (:class:`LlamaConfig` or :class:`GPT2Config`, by ``architectures``),
    params in ``param_dtype``, logits function, EOS ids, tokenizer and ``tokenizer_config.json``.

    ``overrides``: fields of the config that do not change the weights, e.g. ``compute_dtype`` or ``remat``
    (those left at None / their default are not set, so a family without the field loads too).
    """
    with open(os.path.join(path, "config.json")) as f:
        hf = json.load(f)
    config = config_from_hf(hf, param_dtype=param_dtype)
    fields = {f.name: f.default for f in dataclasses.fields(config)}
    changed = {k: v for k, v in overrides.items() if k not in fields or v != fields[k]}
    bad = sorted(set(changed) - set(fields) | set(changed) & _WEIGHT_FIELDS)
    if bad:
        raise ValueError(f"load() overrides {bad} are not settable on a {type(config).__name__} checkpoint")
    config = dataclasses.replace(config, **changed)
    is_gpt2 = isinstance(config, gpt2.GPT2Config)
    graphdef, state = family(config).abstract(config)
    pure = nnx.to_pure_dict(state)
    names = _hf_names(config)
    seen = set()
    for file in _weight_files(path):
        for name, tensor in _read_safetensors(file).items():
            if re.fullmatch(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", name):
                continue  # old checkpoints store the RoPE table; it is recomputed from the config
            if name == "lm_head.weight" and (is_gpt2 or config.tie_embeddings):
                continue  # tied: the same tensor as the embedding
            if is_gpt2:
                if re.fullmatch(r"(transformer\.)?h\.\d+\.attn\.(masked_)?bias", name):
                    continue  # older GPT-2 checkpoints store the causal mask buffers
                if not name.startswith("transformer."):
                    name = "transformer." + name  # saved from GPT2Model (the official gpt2 files)
            if name not in names:
                raise ValueError(
                    f"unexpected tensor {name!r} in {file}; not part of a {hf['architectures'][0]}"
                )
            where, transpose = names[name]
            node = pure
            for key in where[:-1]:
                node = node[key]
            target = node[where[-1]]
            value = np.asarray(tensor).T if transpose else np.asarray(tensor)
            if value.shape != target.shape:
                raise ValueError(
                    f"tensor {name} has shape {value.shape} after transpose, expected {target.shape}"
                )
            node[where[-1]] = jnp.asarray(value.astype(np.float32), dtype=config.dtype)
            seen.add(name)
    missing = sorted(set(names) - seen)
    if missing:
        raise ValueError(f"checkpoint {path} is missing tensors {missing[:5]} ({len(missing)} in all)")
    nnx.replace_by_pure_dict(state, pure)
    bos, eos = (_first_id(hf.get(f"{t}_token_id")) for t in ("bos", "eos"))
    settings = load_tokenizer_config(path)
    tokenizer = load_tokenizer(
        path, config.vocab_size, bos_token=bos, eos_token=eos, pad_token=settings.pad_token
    )
    return Checkpoint(
        config, graphdef, state, llama.decoder(graphdef), _eos_ids(path, hf), tokenizer, settings
    )


def _has_adapters(tree) -> bool:
    if not isinstance(tree, dict):
        return False
    return any((k == "lora" and v is not None) or _has_adapters(v) for k, v in tree.items())


def save(path: str, config: Config, params: nnx.State, *, max_shard_bytes: int | None = None) -> None:
    """Write ``config.json`` and safetensors (sharded with an index when larger than ``max_shard_bytes``).

    ``params`` is a plain model's state: LoRA adapters (an ``(adapters, base)`` tuple, or a state holding
    ``lora`` entries) are refused rather than silently dropped; fold them in first with ``lora.merge``."""
    family(config)
    if isinstance(params, tuple) or _has_adapters(nnx.to_pure_dict(params)):
        raise ValueError(
            "params hold LoRA adapters, which save() would drop; fold them in with lora.merge first"
        )
    os.makedirs(path, exist_ok=True)
    pure = jax.device_get(nnx.to_pure_dict(params))
    tensors = {}
    for name, (where, transpose) in _hf_names(config).items():
        node = pure
        for key in where:
            node = node[key]
        value = np.asarray(node)
        tensors[name] = np.ascontiguousarray(value.T if transpose else value)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config_to_hf(config), f, indent=2)
    total = sum(t.nbytes for t in tensors.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        _write_safetensors(tensors, os.path.join(path, "model.safetensors"))
        return
    shards: list[dict[str, np.ndarray]] = [{}]
    for name, t in tensors.items():
        if shards[-1] and sum(x.nbytes for x in shards[-1].values()) + t.nbytes > max_shard_bytes:
            shards.append({})
        shards[-1][name] = t
    width, weight_map = max(5, int(math.log10(len(shards))) + 1), {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:0{width}d}-of-{len(shards):0{width}d}.safetensors"
        _write_safetensors(shard, os.path.join(path, file))
        weight_map.update(dict.fromkeys(shard, file))
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def export(
    path: str,
    config: Config,
    params: nnx.State,
    *,
    tokenizer_from: str | None = None,
    overwrite: bool = False,
    max_shard_bytes: int | None = None,
) -> None:
    """A Hugging Face directory that ``transformers`` (and :func:`load`) read: :func:`save`, plus the
    tokenizer, chat template and generation settings of ``tokenizer_from`` (the checkpoint trained from).

    Copies whichever of :data:`TOKENIZER_FILES` ``tokenizer_from`` has (at least one is required) and its
    ``config.json``'s ``bos/eos/pad_token_id``, so the export stops and frames prompts as the source did; a
    ``tokenizer.json`` with ids past ``config.vocab_size`` is refused. ``params`` is a plain model's state:
    fold LoRA adapters in first with ``lora.merge``. A non-empty ``path`` is refused unless ``overwrite``
    (which replaces only the files written here).
    """
    family(config)
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise ValueError(f"export target {path} is not empty; pass overwrite=True or choose a new directory")
    copies, ids = [], {}
    if tokenizer_from is not None:
        if not os.path.isdir(tokenizer_from):
            raise ValueError(f"tokenizer_from={tokenizer_from!r} is not a directory")
        copies = [f for f in TOKENIZER_FILES if os.path.exists(os.path.join(tokenizer_from, f))]
        if not copies:
            raise ValueError(
                f"tokenizer_from={tokenizer_from!r} has none of the tokenizer files {TOKENIZER_FILES}"
            )
        load_tokenizer(tokenizer_from, config.vocab_size)  # the tokenizer must fit this model's embedding
        source = os.path.join(tokenizer_from, "config.json")
        if os.path.exists(source):
            with open(source) as f:
                src = json.load(f)
            ids = {
                k: src[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if src.get(k) is not None
            }
    if overwrite and os.path.isdir(path):
        for name in os.listdir(path):  # stale shards of an earlier export would shadow the new weights
            if name.startswith("model") and name.endswith((".safetensors", ".safetensors.index.json")):
                os.remove(os.path.join(path, name))
    save(path, config, params, max_shard_bytes=max_shard_bytes)
    for name in copies:
        shutil.copyfile(os.path.join(tokenizer_from, name), os.path.join(path, name))
    if ids:
        with open(os.path.join(path, "config.json")) as f:
            hf = json.load(f)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(hf | ids, f, indent=2)
