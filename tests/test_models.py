"""Model references, model_info (config.json only), load_base and clean copies."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autopeft.exceptions import FatalError
from autopeft.models import TINY_CONFIGS, minilm_path, model_info

INFO = [
    # ref, family, layers, hidden, heads, intermediate, kv heads
    ("minilm", "bert", 6, 384, 12, 1536, None),
    ("tiny-gpt2", "gpt2", 4, 64, 4, 256, None),
    ("tiny-llama", "llama", 4, 64, 4, 176, 2),
]


@pytest.mark.parametrize("ref,family,layers,hidden,heads,inter,kv", INFO)
def test_model_info_reads_the_config(ref, family, layers, hidden, heads, inter, kv):
    info = model_info(ref)
    assert (info.family, info.num_layers, info.hidden_size, info.num_heads,
            info.intermediate_size, info.num_kv_heads) == (family, layers, hidden, heads, inter, kv)
    assert info.vocab_size == 30522  # the tiny decoders reuse MiniLM's tokenizer
    assert info.head_dim * info.num_heads == hidden


def test_minilm_is_the_default_and_a_folder_reads_the_same():
    assert model_info() == model_info("minilm")
    by_path = model_info(str(minilm_path()))
    assert by_path.path == model_info("minilm").path
    assert by_path.family == "bert" and by_path.num_layers == 6


def test_llama_key_value_width_follows_grouped_query_attention():
    assert model_info("tiny-llama").kv_size == 2 * 16
    assert model_info("minilm").kv_size == 384


def test_bad_references_say_what_to_do(tmp_path):
    with pytest.raises(FatalError, match="no config.json"):
        model_info(str(tmp_path))
    with pytest.raises(FatalError, match="not a model folder"):
        model_info(str(tmp_path / "missing"))


def test_hub_id_offline_fails_with_a_fix():
    code = ("from autopeft.models import model_info\n"
            "from autopeft.exceptions import FatalError\n"
            "try:\n    model_info('nobody/no-such-model')\n"
            "except FatalError as e:\n    assert 'fix:' in str(e), e\n"
            "    assert 'offline mode is on' in str(e) and 'local model folder' in str(e), e\n"
            "    print('refused')\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "refused", out.stderr


@pytest.mark.parametrize("fixture,labels", [("minilm", 2), ("tiny_gpt2", 3), ("tiny_llama", 3)])
def test_load_base_gives_a_frozen_classifier_with_a_pad_token(request, fixture, labels):
    base = request.getfixturevalue(fixture)
    assert base.num_labels == labels
    assert base.model.config.num_labels == labels
    assert base.tokenizer.pad_token is not None
    assert base.model.config.pad_token_id == base.tokenizer.pad_token_id
    assert not any(p.requires_grad for p in base.model.parameters())
    head = getattr(base.model, base.info.head_names[0])
    assert head.weight.shape[0] == labels


def test_tiny_models_are_built_from_their_configs(tiny_gpt2, tiny_llama):
    assert tiny_gpt2.model.config.n_layer == TINY_CONFIGS["tiny-gpt2"]["n_layer"]
    assert tiny_llama.model.config.num_key_value_heads == 2
    assert tiny_llama.model.model.layers[0].self_attn.k_proj.out_features == 32


def test_fresh_returns_an_independent_copy_with_pristine_weights(minilm):
    import torch

    a = minilm.fresh()
    pristine = dict(minilm.model.named_parameters())
    for name, p in a.named_parameters():
        assert torch.equal(p, pristine[name])
        assert p.data_ptr() != pristine[name].data_ptr()
    with torch.no_grad():
        a.bert.encoder.layer[0].attention.self.query.weight.add_(1.0)
    b = minilm.fresh()
    assert torch.equal(b.bert.encoder.layer[0].attention.self.query.weight,
                       pristine["bert.encoder.layer.0.attention.self.query.weight"])
    assert a.training and b.training


def test_load_base_is_seeded_and_leaves_global_rng_alone(torch_threads):
    import torch

    from autopeft.models import load_base

    state = torch.get_rng_state()
    a = load_base("tiny-gpt2", num_labels=2, seed=5)
    b = load_base("tiny-gpt2", num_labels=2, seed=5)
    c = load_base("tiny-gpt2", num_labels=2, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.model.score.weight, b.model.score.weight)
    assert not torch.equal(a.model.score.weight, c.model.score.weight)


def test_load_base_refuses_zero_labels():
    from autopeft.models import load_base

    with pytest.raises(FatalError, match="num_labels"):
        load_base("tiny-gpt2", num_labels=0)
