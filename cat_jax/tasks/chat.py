"""Prompts through a checkpoint's own chat template (SPEC §3.1), rendered as transformers renders them.

A checkpoint's ``tokenizer_config.json`` (or its ``chat_template.jinja``) carries a Jinja chat template;
:func:`load_tokenizer_config` reads it with the special tokens, :func:`template_for` picks it (or one of
:data:`PLAIN_TEMPLATES` for a checkpoint without one), and :class:`ChatEncoder` turns ``(problem, target)``
into ``(prompt_ids, target_ids)`` for :func:`~cat_jax.tasks.tokenizers.layout`:

- user turn ``"Problem:\\n" + problem``; prompt = template([user], add_generation_prompt=True); training
  sequence = template([user, assistant=target]); both tokenised as written, without the tokenizer's own
  special tokens (as ``apply_chat_template(tokenize=True)`` does), so a template that writes
  ``{{ bos_token }}`` beside a post-processor that adds BOS still gives one BOS;
- the prompt's ids must be an exact prefix of the sequence's; the target ids are the rest (the assistant turn
  with the template's end-of-turn / EOS tokens, all supervised).

Rendering mirrors transformers' ``apply_chat_template(..., tokenize=False)``
(``transformers/utils/chat_template_utils.py``): a sandboxed Jinja environment with ``trim_blocks`` and
``lstrip_blocks`` (without them a multi-line template leaves its newlines and indentation in the prompt), the
``loopcontrols`` extension, ``raise_exception``, ``strftime_now`` and a ``tojson`` filter that does not
HTML-escape; transformers itself is not imported.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from cat_jax.tasks.tokenizers import HFTokenizer

PROBLEM_PREFIX = "Problem:\n"  # SPEC §3.1: the user turn is "Problem:" + newline + the problem text

# Templates for checkpoints that ship none (base models, the tiny models of the tests), by name.
# "plain": ``{bos}`` + user content + ``"\n"`` is the generation prompt; the assistant turn is its content +
# ``{eos}``. With the encoder's user turn: ``<s>Problem:\n{problem}\n`` then ``{target}</s>``, the layout of
# ``PromptTargetEncoder(tokenizer, separator="\n")``. No system turn; a missing bos_token renders as nothing.
PLAIN_TEMPLATES: dict[str, str] = {
    "plain": (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}{{ message['content'] }}"
        "{% elif message['role'] == 'assistant' %}{{ '\\n' + message['content'] + eos_token }}"
        "{% else %}{{ raise_exception('the plain template has user and assistant turns only, got role '"
        " + message['role']) }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '\\n' }}{% endif %}"
    ),
}

_TOKEN_FIELDS = ("bos_token", "eos_token", "pad_token", "unk_token")


class AddedToken(NamedTuple):
    """One entry of ``tokenizer_config.json``'s ``added_tokens_decoder``."""

    content: str
    special: bool


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """What a checkpoint's ``tokenizer_config.json`` says about prompts (all None/empty when it is absent).

    ``chat_template``: the default template source; ``chat_templates``: every named one (``"default"``
    included); ``template_origin``: the file/field it came from (for messages). Token fields are strings.
    """

    path: str = ""
    chat_template: str | None = None
    chat_templates: dict[str, str] = dataclasses.field(default_factory=dict)
    template_origin: str = ""
    bos_token: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None
    unk_token: str | None = None
    add_bos_token: bool | None = None
    add_eos_token: bool | None = None
    added_tokens_decoder: dict[int, AddedToken] = dataclasses.field(default_factory=dict)


def _read_json(file: Path) -> dict:
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(data).__name__}")
    return data


def _token(value: Any, field: str, file: Path) -> str | None:
    """A special-token field: a string, an AddedToken dict ``{"content": ...}`` or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"{file} field {field} must be a string or {{'content': str}}, got {value!r}")


def _templates(raw: dict, file: Path, path: Path) -> tuple[dict[str, str], str]:
    """Named template sources and their origin; ``.jinja`` files win over the config (as in transformers)."""
    found: dict[str, str] = {}
    if (path / "chat_template.jinja").is_file():
        found["default"] = (path / "chat_template.jinja").read_text(encoding="utf-8")
    extra = path / "additional_chat_templates"
    if extra.is_dir():
        for f in sorted(extra.glob("*.jinja")):
            found[f.stem] = f.read_text(encoding="utf-8")
    if found:
        return found, str(path / "chat_template.jinja") if "default" in found else str(extra)
    value = raw.get("chat_template")
    origin = f"{file} field chat_template"
    if value is None:
        return {}, ""
    if isinstance(value, str):
        return {"default": value}, origin
    if isinstance(value, list) and all(
        isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("template"), str)
        for t in value
    ):
        return {t["name"]: t["template"] for t in value}, origin
    raise ValueError(
        f"{origin} must be a string or a list of {{'name': str, 'template': str}}, got {type(value).__name__}"
    )


def load_tokenizer_config(path_dir: str | Path) -> TokenizerConfig:
    """The chat template and special tokens of a local checkpoint directory (nothing downloads).

    Reads ``tokenizer_config.json`` (absent: nothing set), ``chat_template.jinja`` and
    ``additional_chat_templates/*.jinja`` (which take priority over the config's ``chat_template``, as in
    transformers), and ``special_tokens_map.json`` when the config has no ``added_tokens_decoder`` (legacy).
    """
    path = Path(path_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint directory at {path}")
    file = path / "tokenizer_config.json"
    raw = _read_json(file) if file.is_file() else {}
    templates, origin = _templates(raw, file, path)
    tokens = {k: _token(raw.get(k), k, file) for k in _TOKEN_FIELDS}
    legacy = path / "special_tokens_map.json"
    if "added_tokens_decoder" not in raw and legacy.is_file():
        legacy_raw = _read_json(legacy)
        tokens |= {k: _token(legacy_raw[k], k, legacy) for k in _TOKEN_FIELDS if k in legacy_raw}
    added = {}
    for i, t in (raw.get("added_tokens_decoder") or {}).items():
        if not (str(i).isdigit() and isinstance(t, dict) and isinstance(t.get("content"), str)):
            raise ValueError(
                f"{file} field added_tokens_decoder: entry {i!r}: {t!r} is not id -> {{'content'}}"
            )
        added[int(i)] = AddedToken(t["content"], bool(t.get("special", False)))
    flags = {}
    for k in ("add_bos_token", "add_eos_token"):
        if not isinstance(raw.get(k), (bool, type(None))):
            raise ValueError(f"{file} field {k} must be true, false or null, got {raw[k]!r}")
        flags[k] = raw.get(k)
    return TokenizerConfig(
        path=str(path),
        chat_template=templates.get("default"),
        chat_templates=templates,
        template_origin=origin,
        added_tokens_decoder=added,
        **tokens,
        **flags,
    )


# ----------------------------------------------------------------------------- rendering


def _jinja2():
    try:
        import jinja2
        import jinja2.ext
        import jinja2.sandbox
    except ImportError as e:
        raise ImportError("chat templates need the `jinja2` package: pip install 'cat_jax[hf]'") from e
    return jinja2


def _raise_exception(message: str):
    raise _jinja2().exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    # transformers' override: Jinja's own tojson HTML-escapes (<, >, &, ') and takes fewer options.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


@functools.lru_cache(maxsize=32)
def _compile(source: str):
    """A compiled template, cached by source (ChatTemplate holds only strings, so it pickles)."""
    jinja2 = _jinja2()
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    r"""A Jinja chat template with the special-token strings it may write; ``name`` appears in errors.

    >>> t = ChatTemplate(PLAIN_TEMPLATES["plain"], bos_token="<s>", eos_token="</s>", name="plain")
    >>> user, answer = {"role": "user", "content": "Problem:\n1+1"}, {"role": "assistant", "content": "2"}
    >>> t.render([user], add_generation_prompt=True), t.render([user, answer], add_generation_prompt=False)
    ('<s>Problem:\n1+1\n', '<s>Problem:\n1+1\n2</s>')
    """

    source: str
    _: dataclasses.KW_ONLY
    bos_token: str | None
    eos_token: str | None
    name: str

    def __post_init__(self):
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(
                f"chat template {self.name!r}: source must be a non-empty string, got {self.source!r}"
            )
        self._compiled()  # a syntax error is reported now, with the template's name

    def _compiled(self):
        try:
            return _compile(self.source)
        except _jinja2().TemplateSyntaxError as e:
            raise ValueError(f"chat template {self.name!r} does not parse: {e} (line {e.lineno})") from None

    def uses(self, variable: str) -> bool:
        """Whether the source mentions ``variable`` (``bos_token``, ``eos_token``)."""
        return re.search(rf"\b{variable}\b", self.source) is not None

    def render(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool) -> str:
        """The conversation as text, exactly as ``apply_chat_template(messages, tokenize=False)`` renders it.

        Variables: ``messages``, ``add_generation_prompt``, ``tools`` / ``documents`` (None) and the special
        tokens that are set (an unset one is undefined and renders as nothing, as in transformers).
        """
        tokens = {
            k: v for k, v in (("bos_token", self.bos_token), ("eos_token", self.eos_token)) if v is not None
        }
        try:
            return self._compiled().render(
                messages=[dict(m) for m in messages],
                tools=None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **tokens,
            )
        except _jinja2().TemplateError as e:
            raise ValueError(f"chat template {self.name!r} refused the conversation: {e}") from None


def template_for(tokenizer_config: TokenizerConfig, name: str = "") -> ChatTemplate:
    """The checkpoint's own template (``name=""``), one of :data:`PLAIN_TEMPLATES`, or a named one of the
    checkpoint's; special tokens from the config. No template and no name is an error naming the choices."""
    cfg = tokenizer_config
    where = cfg.path or "the checkpoint"
    own = sorted(cfg.chat_templates)
    if name in PLAIN_TEMPLATES:
        source, label = PLAIN_TEMPLATES[name], name
    elif name == "" and cfg.chat_template is not None:
        source, label = cfg.chat_template, cfg.template_origin or "chat_template"
    elif name and name in cfg.chat_templates:
        source, label = cfg.chat_templates[name], f"{cfg.template_origin} [{name}]"
    elif name:
        raise ValueError(
            f"unknown chat template {name!r}; expected one of {sorted(PLAIN_TEMPLATES)} "
            f"or the checkpoint's {own}"
        )
    else:
        extra = f" (it has named templates {own} but no 'default')" if own else ""
        raise ValueError(
            f"{where} has no chat template (tokenizer_config.json field chat_template, or "
            f"chat_template.jinja){extra}; name one of {sorted(PLAIN_TEMPLATES)}"
        )
    return ChatTemplate(source, bos_token=cfg.bos_token, eos_token=cfg.eos_token, name=label)


# ----------------------------------------------------------------------------- encoding


def _check_tokens(tokenizer: HFTokenizer, template: ChatTemplate) -> None:
    """Every special token the template writes must be one token of the tokenizer."""
    for field in ("bos_token", "eos_token"):
        if not template.uses(field):
            continue
        token = getattr(template, field)
        if token is None:
            if (
                field == "eos_token"
            ):  # an assistant turn without its end: nothing would teach the model to stop
                raise ValueError(f"chat template {template.name!r} writes eos_token but none is set")
            continue
        if tokenizer.token_to_id(token) is None:
            raise ValueError(
                f"chat template {template.name!r} writes {field} {token!r}, "
                "which is not a token of the tokenizer"
            )


def _first_difference(a: Sequence, b: Sequence) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


@dataclasses.dataclass(frozen=True)
class ChatEncoder:
    """``(problem, target) -> (prompt_ids, target_ids)`` through a chat template (SPEC §3.1); picklable.

    ``stop_tokens``: ids that end sampling (:func:`stop_token_ids`). Raises ``ValueError`` naming the template
    when the generation prompt's ids are not an exact prefix of the full conversation's.
    """

    tokenizer: HFTokenizer
    template: ChatTemplate
    stop_tokens: tuple[int, ...]

    def __post_init__(self):
        stops = tuple(self.stop_tokens)
        if not stops or not all(type(i) is int and 0 <= i < self.vocab_size for i in stops):
            raise ValueError(
                f"stop_tokens must be a non-empty tuple of ids in [0, {self.vocab_size}), got {stops}"
            )
        object.__setattr__(self, "stop_tokens", stops)
        _check_tokens(self.tokenizer, self.template)

    @property
    def pad_id(self) -> int:
        """The tokenizer's pad id (its pad token, else EOS: SPEC §3.1)."""
        return self.tokenizer.pad_id

    @property
    def vocab_size(self) -> int:
        """The tokenizer's number of ids."""
        return self.tokenizer.vocab_size

    def _user(self, problem: str) -> dict[str, str]:
        if not isinstance(problem, str):
            raise TypeError(f"problem must be a string, got {type(problem).__name__}")
        return {"role": "user", "content": PROBLEM_PREFIX + problem}

    def prompt(self, problem: str) -> list[int]:
        """Ids of the generation prompt only (what sampling starts from)."""
        return self.tokenizer.encode(self.template.render([self._user(problem)], add_generation_prompt=True))

    def __call__(self, problem: str, target: str) -> tuple[list[int], list[int]]:
        if not isinstance(target, str):
            raise TypeError(f"target must be a string, got {type(target).__name__}")
        user = self._user(problem)
        prompt_text = self.template.render([user], add_generation_prompt=True)
        full_text = self.template.render(
            [user, {"role": "assistant", "content": target}], add_generation_prompt=False
        )
        name = self.template.name
        if not full_text.startswith(prompt_text):
            at = _first_difference(prompt_text, full_text)
            raise ValueError(
                f"chat template {name!r}: the generation prompt is not a prefix of the conversation with the "
                f"assistant turn (they differ at character {at}: {prompt_text[at : at + 20]!r} vs "
                f"{full_text[at : at + 20]!r}); the template renders the user turn differently when an "
                "assistant turn follows"
            )
        prompt, full = self.tokenizer.encode(prompt_text), self.tokenizer.encode(full_text)
        if full[: len(prompt)] != prompt:
            at = _first_difference(prompt, full)
            raise ValueError(
                f"chat template {name!r}: the generation prompt's {len(prompt)} tokens are not a token "
                f"prefix of the full conversation's (first difference at token {at}): the tokenizer merges "
                "across the end of the prompt"
            )
        return prompt, full[len(prompt) :]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids, special tokens skipped."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)


_PROBE = "cat jax end of turn probe"


def stop_token_ids(
    tokenizer: HFTokenizer,
    tokenizer_config: TokenizerConfig,
    eos_token_ids_from_config: Sequence[int] = (),
    *,
    template: ChatTemplate | None = None,
) -> tuple[int, ...]:
    """Sorted ids that end an assistant turn.

    The model's EOS ids (``config.json``, ``generation_config.json``), the tokenizer's and
    ``tokenizer_config.json``'s EOS, and the template's end-of-turn token when it is a special token (Qwen
    ``<|im_end|>``, Llama 3 ``<|eot_id|>``): the first token written after the assistant's content.
    ``template``: default the checkpoint's own, if it has one.
    """
    ids = {int(i) for i in eos_token_ids_from_config}
    for i in (tokenizer.eos_id, tokenizer.token_to_id(tokenizer_config.eos_token or "")):
        if i is not None:
            ids.add(i)
    if template is None and tokenizer_config.chat_template is not None:
        template = template_for(tokenizer_config)
    if template is not None:
        text = template.render(
            [{"role": "user", "content": PROBLEM_PREFIX + "x"}, {"role": "assistant", "content": _PROBE}],
            add_generation_prompt=False,
        )
        after = text[text.rfind(_PROBE) + len(_PROBE) :] if _PROBE in text else ""
        first = tokenizer.encode(after)[:1]
        special = tokenizer.special_ids | {
            i for i, t in tokenizer_config.added_tokens_decoder.items() if t.special
        }
        if first and first[0] in special:
            ids.add(first[0])
    if not ids:
        raise ValueError(
            "no stop token: config.json / generation_config.json name no eos_token_id, the tokenizer no "
            f"eos_token and {tokenizer_config.path or 'tokenizer_config.json'} no eos_token"
        )
    return tuple(sorted(ids))


def chat_encoder(
    tokenizer: HFTokenizer,
    tokenizer_config: TokenizerConfig,
    template: str = "",
    eos_token_ids: Sequence[int] = (),
) -> ChatEncoder:
    """:class:`ChatEncoder` of a checkpoint: :func:`template_for` ``template`` (its own when "") and
    :func:`stop_token_ids` (``eos_token_ids``: the model config's). A plain template takes the tokenizer's
    BOS/EOS where ``tokenizer_config.json`` names none; a checkpoint's own template renders as transformers
    does, where an unnamed token is undefined."""
    chat = template_for(tokenizer_config, template)
    fill = {}
    for field, i in (("bos_token", tokenizer.bos_id), ("eos_token", tokenizer.eos_id)):
        if template in PLAIN_TEMPLATES and getattr(chat, field) is None and i is not None:
            fill[field] = tokenizer.id_to_token(i)
    if fill:
        chat = ChatTemplate(
            chat.source,
            bos_token=fill.get("bos_token", chat.bos_token),
            eos_token=fill.get("eos_token", chat.eos_token),
            name=chat.name,
        )
    return ChatEncoder(
        tokenizer, chat, stop_token_ids(tokenizer, tokenizer_config, eos_token_ids, template=chat)
    )
