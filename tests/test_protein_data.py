"""The protein arrays read through CatProtein: the same draws in generation order, the layouts, the batcher
(the experiment's arrays against the old in-memory construction: tests/experiments/test_protein.py)."""

import numpy as np
import pytest

from cat_jax.tasks import protein, protein_data
from cat_jax.tasks.tokenizers import IGNORE

TOK = protein.tokenizer()


def test_records_are_the_draws_in_generation_order(tmp_path):
    seqs = protein_data.read_corpus(40, seed=3, max_len=16, data_dir=tmp_path)
    assert seqs == protein.pretraining_corpus(40, seed=3, max_len=16)
    # The first n records are the first n draws, whatever the prepared size.
    assert protein_data.read_corpus(25, seed=3, max_len=16, data_dir=tmp_path) == seqs[:25]
    sizes = {"warmup": 6, "train": 5, "test": 3}
    pairs = protein_data.read_pairs(sizes, data_dir=tmp_path)
    for split, n in sizes.items():
        assert pairs[split] == protein.conditional_pairs(n, split, seed=42)
    with pytest.raises(ValueError, match="sizes must name the splits"):
        protein_data.read_pairs({"train": 5}, data_dir=tmp_path)


def test_configs_are_named_after_every_field():
    assert protein_data.corpus_config(64, seed=1, max_len=32).name == "pretrain_n64_len32_seed1"
    rare = protein_data.corpus_config(64, max_len=32, rare_fraction=0.02, common_beta=(30, 60))
    assert rare.name == "pretrain_n64_len32_seed0_common_beta30-60_rare_fraction0.02"
    assert rare.common_beta == (30.0, 60.0) and rare.rare_beta == (60.0, 20.0)
    with pytest.raises(ValueError, match="unknown corpus knob"):
        protein_data.corpus_config(64, rare=0.1)
    c = protein_data.pairs_config({"test": 3, "warmup": 2, "train": 1}, seed=7)
    assert c.name == "conditional_2_1_3_seed7" and c.sizes == (("warmup", 2), ("train", 1), ("test", 3))


def test_sft_and_prompt_layouts():
    pre = protein_data.sft_arrays([("", "ACD"), ("", "AC")])
    bos, eos = TOK.bos_id, TOK.eos_id
    a, c, d = TOK.encode("ACD")
    np.testing.assert_array_equal(pre["tokens"], [[bos, a, c, d, eos], [bos, a, c, eos, 0]])
    np.testing.assert_array_equal(pre["labels"], [[IGNORE, a, c, d, eos], [IGNORE, a, c, eos, IGNORE]])
    cond = protein_data.sft_arrays([("AC", "D"), ("A", "CD")])
    sep = TOK.encode(">")[0]
    np.testing.assert_array_equal(cond["tokens"], [[bos, a, c, sep, d, eos], [bos, a, sep, c, d, eos]])
    np.testing.assert_array_equal(cond["labels"], [[IGNORE] * 4 + [d, eos], [IGNORE] * 3 + [c, d, eos]])
    p = protein_data.prompt_arrays([("ACDA", "D"), ("CC", "A")])
    np.testing.assert_array_equal(p["prompts"], [[bos, a, c, d, a, sep], [bos, c, c, sep, 0, 0]])
    np.testing.assert_array_equal(p["lengths"], [6, 4])
    np.testing.assert_array_equal(p["input_length"], [4, 2])
    np.testing.assert_array_equal(p["input_hydrophobic"], [2, 0])  # A is hydrophobic, C and D are not
    assert all(v.dtype == np.int32 for v in (*pre.values(), *cond.values(), *p.values()))


@pytest.mark.parametrize(("n", "batch_size"), [(10, 4), (3, 4)])
def test_batches_follow_the_epoch_permutation(n, batch_size):
    arrays = {"x": np.arange(n, dtype=np.int32) * 10, "y": np.arange(n, dtype=np.int32)}
    rows = protein_data.batches(arrays, batch_size, seed=5)
    per_epoch = max(n // batch_size, 1)
    for step in range(3 * per_epoch + 1):
        epoch, i = divmod(step, per_epoch)
        want = np.random.default_rng([5, epoch]).permutation(n)[i * batch_size : (i + 1) * batch_size]
        got = rows(step)
        np.testing.assert_array_equal(got["index"], want)
        np.testing.assert_array_equal(got["x"], want * 10)
        np.testing.assert_array_equal(got["y"], want)
