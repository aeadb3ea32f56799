"""Bad inputs of cat_jax.tasks.chat (chat templates and the SPEC §3.1 encoder): rows of docs/errors.md."""

import functools
import os
import tempfile

from cat_jax.tasks import chat
from cat_jax.tasks.tokenizers import HFTokenizer

from . import DOMAIN, DTYPE, EMPTY, MISSING, UNKNOWN, raises


@functools.cache
def _tokenizer() -> HFTokenizer:
    """A byte-level tokenizer with ``<s>`` and ``</s>`` (loaded into memory; its file is gone afterwards)."""
    import tokenizers

    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    tok = tokenizers.Tokenizer(
        tokenizers.models.BPE(vocab={c: i for i, c in enumerate(sorted(alphabet))}, merges=[])
    )
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.add_special_tokens(["<s>", "</s>"])
    with tempfile.TemporaryDirectory() as d:
        tok.save(os.path.join(d, "tokenizer.json"))
        return HFTokenizer(os.path.join(d, "tokenizer.json"), "<s>", "</s>")


def _template(source=chat.PLAIN_TEMPLATES["plain"], bos="<s>", name="plain") -> chat.ChatTemplate:
    return chat.ChatTemplate(source, bos_token=bos, eos_token="</s>", name=name)


def _encoder(template=None, stop_tokens=(257,)) -> chat.ChatEncoder:
    return chat.ChatEncoder(_tokenizer(), template or _template(), stop_tokens)


# The last user turn ends "?", an earlier one ".": the prompt is not a prefix of prompt + answer.
_CHANGES = "{% for m in messages %}{{ m['content'] + ('?' if loop.last else '.') }}{% endfor %}"

# fmt: off
CASES = [
    raises("tasks.chat.load_tokenizer_config", MISSING, '"no/such/checkpoint"',
           lambda: chat.load_tokenizer_config("no/such/checkpoint"),
           r"no checkpoint directory at no/such/checkpoint", exc=FileNotFoundError),
    raises("tasks.chat.template_for", MISSING, "a checkpoint without a chat template, no name",
           lambda: chat.template_for(chat.TokenizerConfig(path="ckpt")),
           r"ckpt has no chat template \(tokenizer_config.json field chat_template, or "
           r"chat_template.jinja\); "
           r"name one of \['plain'\]"),
    raises("tasks.chat.template_for", UNKNOWN, 'name="chatml"',
           lambda: chat.template_for(chat.TokenizerConfig(path="ckpt"), "chatml"),
           r"unknown chat template 'chatml'; expected one of \['plain'\] or the checkpoint's \[\]"),
    raises("tasks.chat.ChatTemplate", DOMAIN, 'a template that does not parse ("{% for %}")',
           lambda: _template("{% for %}", name="broken"), r"chat template 'broken' does not parse"),
    raises("tasks.chat.ChatTemplate.render", DOMAIN, "a role the template refuses (system)",
           lambda: _template().render([{"role": "system", "content": "x"}], add_generation_prompt=True),
           r"chat template 'plain' refused the conversation: the plain template has user and "
           r"assistant turns"),
    raises("tasks.chat.ChatEncoder", DOMAIN, "a template whose user turn changes when an answer follows",
           lambda: _encoder(_template(_CHANGES, name="changes"))("1+1", "2"),
           r"chat template 'changes': the generation prompt is not a prefix of the conversation"),
    raises("tasks.chat.ChatEncoder", DOMAIN, 'bos_token "<bos>" the tokenizer lacks',
           lambda: _encoder(_template(bos="<bos>")),
           r"chat template 'plain' writes bos_token '<bos>', which is not a token of the tokenizer"),
    raises("tasks.chat.ChatEncoder", EMPTY, "stop_tokens=()", lambda: _encoder(stop_tokens=()),
           r"stop_tokens must be a non-empty tuple of ids in \[0, 258\), got \(\)"),
    raises("tasks.chat.ChatEncoder", DTYPE, "a target that is not a string (2)", lambda: _encoder()("1+1", 2),
           r"target must be a string, got int", exc=TypeError),
]
# fmt: on
