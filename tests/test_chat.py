"""Chat templates: rendering and token ids equal transformers' apply_chat_template; the SPEC §3.1 encoder."""

import json
import pickle

import pytest

from cat_jax.tasks import chat
from cat_jax.tasks.tokenizers import HFTokenizer, layout

tokenizers = pytest.importorskip("tokenizers")
jinja2 = pytest.importorskip("jinja2")

# The public templates of three families, as their tokenizer_config.json carry them.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# A ChatML template over several lines: only trim_blocks + lstrip_blocks keep its layout out of the text.
MULTILINE = """{% for message in messages %}
  {% if message['role'] == 'user' %}
<|im_start|>user
{{ message['content'] }}<|im_end|>
  {% else %}
<|im_start|>assistant
{{ message['content'] }}<|im_end|>
  {% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""

FAMILIES = {
    # name: (template, special tokens, tokenizer_config fields, post-processor BOS)
    "llama3": (
        LLAMA3,
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
        "<|begin_of_text|>",
    ),
    "mistral": (
        MISTRAL,
        ["<unk>", "<s>", "</s>"],
        {
            "bos_token": {"__type": "AddedToken", "content": "<s>", "special": True},
            "eos_token": "</s>",
            "unk_token": "<unk>",
        },
        "<s>",
    ),
    "qwen2": (
        QWEN2,
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        None,
    ),
    "multiline": (
        MULTILINE,
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        {"eos_token": "<|im_end|>"},
        None,
    ),
}
PROBLEM, TARGET = "What is $1 + 1$?", "  The answer is $\\boxed{2}$. é"


def write_checkpoint(path, specials, fields=None, post_bos=None, merges=(), use_regex=True):
    """A byte-level BPE tokenizer.json (every byte a token, plus ``merges``), ``specials`` as added special
    tokens, a post-processor adding ``post_bos`` if given; a tokenizer_config.json of ``fields`` if given."""
    path.mkdir(parents=True, exist_ok=True)
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(alphabet))}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=list(merges)))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    tok.decoder = tokenizers.decoders.ByteLevel()
    tok.add_special_tokens(specials)
    if post_bos is not None:
        tok.post_processor = tokenizers.processors.TemplateProcessing(
            single=f"{post_bos} $A", special_tokens=[(post_bos, tok.token_to_id(post_bos))]
        )
    tok.save(str(path / "tokenizer.json"))
    if fields is not None:
        added = {str(tok.token_to_id(t)): {"content": t, "special": True} for t in specials}
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "added_tokens_decoder": added, **fields}
        (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """name -> (directory, ChatEncoder) for each family."""
    root = tmp_path_factory.mktemp("chat")
    out = {}
    for name, (template, specials, fields, post_bos) in FAMILIES.items():
        path = write_checkpoint(root / name, specials, {**fields, "chat_template": template}, post_bos)
        cfg = chat.load_tokenizer_config(path)
        tok = HFTokenizer(path / "tokenizer.json", cfg.bos_token, cfg.eos_token, pad_token=cfg.pad_token)
        out[name] = path, chat.chat_encoder(tok, cfg)
    return out


def _messages(target=None):
    user = {"role": "user", "content": chat.PROBLEM_PREFIX + PROBLEM}
    return [user] if target is None else [user, {"role": "assistant", "content": target}]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_render_and_ids_match_transformers(checkpoints, name):
    transformers = pytest.importorskip("transformers")
    path, enc = checkpoints[name]
    hf = transformers.AutoTokenizer.from_pretrained(str(path))
    for messages, gen in ((_messages(), True), (_messages(TARGET), False)):
        text = hf.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
        assert enc.template.render(messages, add_generation_prompt=gen) == text
        ids = hf.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True, return_dict=False)
        assert enc.tokenizer.encode(text) == list(ids)
    prompt, target = enc(PROBLEM, TARGET)
    assert prompt == enc.prompt(PROBLEM)
    assert prompt + target == enc.tokenizer.encode(
        enc.template.render(_messages(TARGET), add_generation_prompt=False)
    )
    assert enc.decode(target).strip() == TARGET.strip()  # the template's end-of-turn tokens are skipped


def test_template_bos_and_post_processor_bos_give_one_bos(checkpoints):
    _, enc = checkpoints["mistral"]
    bos = enc.tokenizer.bos_id
    prompt, target = enc(PROBLEM, TARGET)
    assert prompt[0] == bos and prompt.count(bos) == 1 and bos not in target
    assert (
        target[-1] == enc.tokenizer.eos_id and enc.pad_id == enc.tokenizer.eos_id
    )  # Mistral has no pad token
    # The trap: the rendered prompt encoded with the tokenizer's own special tokens starts with two BOS.
    text = enc.template.render(_messages(), add_generation_prompt=True)
    assert enc.tokenizer.backend.encode(text).ids[:2] == [bos, bos]
    assert enc.tokenizer.decode(prompt, skip_special_tokens=False).startswith("<s>[INST] Problem:\n")


def test_trim_and_lstrip_blocks_matter(checkpoints):
    _, enc = checkpoints["multiline"]
    messages = _messages(TARGET)
    ours = enc.template.render(messages, add_generation_prompt=False)
    assert ours == (
        f"<|im_start|>user\n{chat.PROBLEM_PREFIX + PROBLEM}<|im_end|>\n"
        f"<|im_start|>assistant\n{TARGET}<|im_end|>\n"
    )
    naive = jinja2.Template(MULTILINE).render(messages=messages, add_generation_prompt=False)
    assert naive != ours and "  \n" in naive  # the indentation and the block tags' newlines leak


def test_stop_tokens_include_end_of_turn(checkpoints):
    ids = {
        name: {enc.tokenizer.id_to_token(i) for i in enc.stop_tokens}
        for name, (_, enc) in checkpoints.items()
    }
    assert ids["llama3"] == {"<|end_of_text|>", "<|eot_id|>"}
    assert ids["qwen2"] == {"<|im_end|>"} and ids["mistral"] == {"</s>"}
    _, enc = checkpoints["llama3"]
    cfg = chat.load_tokenizer_config(checkpoints["llama3"][0])
    eot = enc.tokenizer.token_to_id("<|eot_id|>")
    assert chat.stop_token_ids(enc.tokenizer, cfg, (7,)) == tuple(sorted({7, eot, enc.tokenizer.eos_id}))
    assert chat.stop_token_ids(enc.tokenizer, cfg, (), template=chat.template_for(cfg, "plain")) == (
        enc.tokenizer.eos_id,
    )
    _, qwen = checkpoints["qwen2"]
    assert qwen.pad_id == qwen.tokenizer.token_to_id("<|endoftext|>")  # the tokenizer's own pad token


def test_encoder_pickles_and_feeds_layout(checkpoints):
    _, enc = checkpoints["qwen2"]
    again = pickle.loads(pickle.dumps(enc))
    assert again(PROBLEM, TARGET) == enc(PROBLEM, TARGET)
    ex = layout(*enc(PROBLEM, TARGET), max_len=200, pad_id=enc.pad_id)
    p = int(ex["prompt_len"])
    assert (ex["labels"][:p] == -100).all() and ex["labels"][p] == ex["tokens"][p]


def test_plain_template_and_missing_template(tmp_path):
    path = write_checkpoint(tmp_path, ["<s>", "</s>"], {"bos_token": "<s>", "eos_token": "</s>"})
    cfg = chat.load_tokenizer_config(path)
    assert cfg.chat_template is None and cfg.added_tokens_decoder[256] == chat.AddedToken("<s>", True)
    with pytest.raises(
        ValueError, match=r"has no chat template .*tokenizer_config.json field chat_template.*plain"
    ):
        chat.template_for(cfg)
    with pytest.raises(ValueError, match=r"unknown chat template 'chatml'; expected one of \['plain'\]"):
        chat.template_for(cfg, "chatml")
    tok = HFTokenizer(path / "tokenizer.json", "<s>", "</s>")
    enc = chat.chat_encoder(tok, cfg, "plain")
    prompt, target = enc("1+1", "2")
    assert prompt == tok.encode("Problem:\n1+1\n", bos=True) and target == tok.encode("2", eos=True)
    assert enc.stop_tokens == (tok.eos_id,) and enc.vocab_size == 258
    # Without a tokenizer_config.json the tokenizer's own BOS/EOS fill the plain template in.
    (path / "tokenizer_config.json").unlink()
    bare = chat.chat_encoder(tok, chat.load_tokenizer_config(path), "plain", eos_token_ids=(tok.eos_id,))
    assert bare("1+1", "2") == (prompt, target)


def test_prefix_violations_raise(tmp_path):
    # A template that writes the last user turn differently: the prompt is not a text prefix.
    changes = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + ('?' if loop.last else '.') }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ ' A:' }}{% endif %}"
    )
    path = write_checkpoint(tmp_path / "a", ["</s>"], {"eos_token": "</s>", "chat_template": changes})
    tok = HFTokenizer(path / "tokenizer.json", eos_token="</s>")
    enc = chat.chat_encoder(tok, chat.load_tokenizer_config(path))
    with pytest.raises(
        ValueError, match=r"chat template .*tokenizer_config.json field chat_template.*not a prefix"
    ):
        enc("q", "a")
    # A text prefix whose tokens merge across the end of the prompt ("\n" + "x" is one token here).
    path = write_checkpoint(tmp_path / "b", ["<s>", "</s>"], {}, merges=[("Ċ", "x")], use_regex=False)
    tok = HFTokenizer(path / "tokenizer.json", "<s>", "</s>")
    enc = chat.chat_encoder(tok, chat.load_tokenizer_config(path), "plain")
    with pytest.raises(ValueError, match=r"chat template 'plain'.*not a token prefix.*merges across"):
        enc("q", "xy")
    assert enc("q", "y")[1] == tok.encode("y", eos=True)


def test_load_tokenizer_config_forms(tmp_path):
    fields = {
        "chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}],
        "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False},
        "add_bos_token": True,
    }
    path = write_checkpoint(tmp_path, ["<s>", "</s>"], fields)
    cfg = chat.load_tokenizer_config(path)
    assert (cfg.chat_template, cfg.chat_templates["tool_use"], cfg.eos_token) == ("D", "T", "</s>")
    assert cfg.add_bos_token is True and cfg.add_eos_token is None and cfg.bos_token is None
    assert chat.template_for(cfg, "tool_use").source == "T"
    (path / "chat_template.jinja").write_text("J")  # newer transformers save the template beside the config
    cfg = chat.load_tokenizer_config(path)
    assert cfg.chat_template == "J" and cfg.template_origin.endswith("chat_template.jinja")
    assert chat.template_for(cfg).name.endswith("chat_template.jinja")
    (tmp_path / "empty").mkdir()
    empty = chat.load_tokenizer_config(tmp_path / "empty")  # no tokenizer_config.json: nothing set
    assert empty == chat.TokenizerConfig(path=str(tmp_path / "empty"))


def test_template_globals_match_transformers():
    t = chat.ChatTemplate(
        "{{ messages[0] | tojson }}{{ strftime_now('%Y')[:2] }}{% for m in messages %}{% if loop.index > 1 %}"
        "{% break %}{% endif %}{{ m['role'] }}{% endfor %}",
        bos_token=None,
        eos_token=None,
        name="globals",
    )
    msgs = [{"role": "user", "content": "<b>é & 'x'"}, {"role": "assistant", "content": "z"}]
    assert t.render(msgs, add_generation_prompt=False) == json.dumps(msgs[0], ensure_ascii=False) + "20user"
    transformers = pytest.importorskip("transformers")
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template([msgs], chat_template=t.source)
    assert rendered[0] == t.render(msgs, add_generation_prompt=False)
    assert transformers  # imported for the parity reference only


def test_template_errors_name_the_template(checkpoints):
    _, enc = checkpoints["mistral"]
    with pytest.raises(
        ValueError, match=r"chat template .* refused the conversation: Conversation roles must"
    ):
        enc.template.render([{"role": "assistant", "content": "a"}], add_generation_prompt=False)
    with pytest.raises(ValueError, match=r"chat template 'broken' does not parse"):
        chat.ChatTemplate("{% for %}", bos_token=None, eos_token=None, name="broken")
    missing = chat.ChatTemplate(MISTRAL, bos_token="<bos>", eos_token="</s>", name="mistral")
    with pytest.raises(ValueError, match=r"writes bos_token '<bos>', which is not a token of the tokenizer"):
        chat.ChatEncoder(enc.tokenizer, missing, enc.stop_tokens)
    with pytest.raises(ValueError, match=r"stop_tokens must be a non-empty tuple"):
        chat.ChatEncoder(enc.tokenizer, enc.template, ())
    with pytest.raises(ValueError, match=r"eos_token '</t>' is not a token of"):
        HFTokenizer(enc.tokenizer.path, eos_token="</t>")


def test_load_tokenizer_config_legacy_files_and_bad_fields(tmp_path):
    path = write_checkpoint(tmp_path, ["<s>", "</s>", "<pad>"])
    (path / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": {"content": "<s>"}, "pad_token": "<pad>"})
    )
    (path / "additional_chat_templates").mkdir()
    (path / "additional_chat_templates" / "rag.jinja").write_text("R")
    cfg = chat.load_tokenizer_config(path)
    assert (cfg.bos_token, cfg.pad_token, cfg.chat_template, cfg.chat_templates) == (
        "<s>",
        "<pad>",
        None,
        {"rag": "R"},
    )
    with pytest.raises(ValueError, match=r"has named templates \['rag'\] but no 'default'"):
        chat.template_for(cfg)
    tok = HFTokenizer(path / "tokenizer.json", "<s>", "</s>", pad_token=cfg.pad_token)
    assert tok.pad_id == 258 and tok.special_ids == {256, 257, 258} and tok.token_to_id("<pad>") == 258
    (path / "additional_chat_templates" / "rag.jinja").unlink()  # else its templates win over the config's
    bad = {
        "{": "is not valid JSON",
        json.dumps({"chat_template": 3}): r"field chat_template must be a string or a list",
        json.dumps({"eos_token": 3}): r"field eos_token must be a string or \{'content': str\}, got 3",
        json.dumps({"add_bos_token": "yes"}): r"field add_bos_token must be true, false or null",
        json.dumps({"added_tokens_decoder": {"x": {}}}): r"field added_tokens_decoder: entry 'x'",
    }
    for text, match in bad.items():
        (path / "tokenizer_config.json").write_text(text)
        with pytest.raises(ValueError, match=r"tokenizer_config.json.*" + match):
            chat.load_tokenizer_config(path)
