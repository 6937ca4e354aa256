"""Task data: built-in and local datasets, leak-free stratified splits, the token cache."""
import json

import numpy as np
import pytest

from autopeft import taskdata
from autopeft.config import DataConfig, ExperimentConfig, load_experiment
from autopeft.exceptions import ExperimentError, FatalError


@pytest.fixture(scope="module")
def trec():
    return taskdata.load_examples(DataConfig(source="builtin:trec6"))


@pytest.fixture(scope="module")
def tokenizer():
    from autopeft.models import load_tokenizer

    return load_tokenizer("minilm")


def test_trec6_is_deduplicated_multiclass(trec):
    assert trec.label_names == ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
    assert len(trec.texts) == 5381          # the distinct questions of TREC's 5,452
    assert len(set(trec.texts)) == len(trec.texts)
    assert trec.labels.shape == (5381,)
    assert set(np.unique(trec.labels)) == set(range(6))


def test_sms_spam_is_binary():
    raw = taskdata.load_examples(DataConfig(source="builtin:sms_spam"))
    assert raw.label_names == ("ham", "spam")
    assert len(raw.texts) == 4837
    assert 0.1 < raw.labels.mean() < 0.2     # ~13% spam


def test_splits_are_disjoint_complete_and_stratified(trec):
    data = DataConfig(source="builtin:trec6", validation=0.1, test=0.1, split_seed=3)
    s = taskdata.make_splits(trec.labels, data)
    tr, va, te = (set(s[k].tolist()) for k in ("train", "validation", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert len(tr | va | te) == trec.labels.size
    assert len(va) == len(te) == 538
    # no question text in two splits (the raw file repeats questions: dedup must hold)
    texts = {k: {trec.texts[i] for i in s[k]} for k in s}
    assert not (texts["train"] & texts["test"]) and not (texts["validation"] & texts["test"])
    whole = np.bincount(trec.labels, minlength=6) / trec.labels.size
    for k in s:
        share = np.bincount(trec.labels[s[k]], minlength=6) / len(s[k])
        assert np.abs(share - whole).max() < 0.01, k
    again = taskdata.make_splits(trec.labels, data)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    other = taskdata.make_splits(trec.labels, DataConfig(split_seed=4))
    assert not np.array_equal(s["test"], other["test"])


def test_counts_instead_of_fractions(trec):
    s = taskdata.make_splits(trec.labels, DataConfig(validation=300, test=200))
    assert (len(s["validation"]), len(s["test"])) == (300, 200)


def test_stratified_subset_keeps_proportions(trec):
    idx = np.arange(trec.labels.size)
    sub = taskdata.stratified_subset(trec.labels, idx, 1000, seed=0)
    assert sub.size == 1000 and len(set(sub.tolist())) == 1000
    expected = np.bincount(trec.labels, minlength=6) * 1000 / trec.labels.size
    assert np.abs(np.bincount(trec.labels[sub], minlength=6) - expected).max() <= 1
    assert np.array_equal(sub, taskdata.stratified_subset(trec.labels, idx, 1000, seed=0))
    assert taskdata.stratified_subset(trec.labels, idx[:10], 50, seed=0).size == 10


def test_too_small_for_the_splits_is_a_located_error():
    labels = np.array([0, 1, 0, 1])
    with pytest.raises(ExperimentError, match="at data:"):
        taskdata.make_splits(labels, DataConfig(validation=2, test=2))


def test_local_pair_files_with_string_labels(tmp_path):
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "gold": "yes" if i % 3 else "no"}
            for i in range(30)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    exp = tmp_path / "e.yaml"
    exp.write_text("data:\n  source: d.jsonl\n  text: [premise, hypothesis]\n  label: gold\n")
    cfg = load_experiment(exp)
    raw = taskdata.load_examples(cfg.data, file=cfg.source)
    assert raw.is_pair and raw.texts[0] == ("p0", "h0")
    assert raw.label_names == ("no", "yes")
    assert raw.labels[:3].tolist() == [0, 1, 1]


def test_csv_and_parquet_and_max_examples(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"sentence": [f"s{i}" for i in range(40)], "y": [i % 2 for i in range(40)]})
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        data = DataConfig(source=str(tmp_path / name), text="sentence", label="y",
                          max_examples=20)
        raw = taskdata.load_examples(data)
        assert len(raw.texts) == 20 and raw.label_names == ("0", "1")
        assert raw.labels.sum() == 10


def test_missing_column_names_the_yaml_path(tmp_path):
    (tmp_path / "d.csv").write_text("sentence,label\na,0\nb,1\n")
    with pytest.raises(ExperimentError, match="data.text") as exc:
        taskdata.load_examples(DataConfig(source=str(tmp_path / "d.csv")), file="x.yaml")
    assert "sentence" in str(exc.value)  # the fix lists the columns
    with pytest.raises(ExperimentError, match="not found"):
        taskdata.load_examples(DataConfig(source=str(tmp_path / "none.csv")))


def test_hub_dataset_offline_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(FatalError) as exc:
        taskdata.load_examples(DataConfig(source="autopeft-no-such-org/no-such-dataset"))
    assert "hub" in str(exc.value) and "fix:" in str(exc.value)


def test_tokenised_once_then_read_from_the_cache(trec, tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPEFT_CACHE", str(tmp_path))
    enc = taskdata.encode(trec, tokenizer, 32)
    files = list((tmp_path / "tokenized").glob("*.pt"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("tokenised again despite the cache")

    monkeypatch.setattr(taskdata, "_tokenise", boom)
    again = taskdata.encode(trec, tokenizer, 32)
    assert again.fingerprint == enc.fingerprint
    assert bool((again.input_ids == enc.input_ids).all())
    with pytest.raises(AssertionError, match="tokenised again"):
        taskdata.encode(trec, tokenizer, 48)  # another max length is another cache entry


def test_dynamic_padding_and_seeded_order(trec, tokenizer, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("AUTOPEFT_CACHE", str(tmp_path))
    enc = taskdata.encode(trec, tokenizer, 64)
    assert int(enc.lengths.max()) <= 64
    idx = np.arange(100)
    batches = list(taskdata.iter_batches(enc, idx, 16))
    for b, start in zip(batches, range(0, 100, 16)):
        lengths = enc.lengths[start:min(start + 16, 100)]
        assert b["input_ids"].shape[1] == int(lengths.max())   # padded to the batch's longest
        assert b["attention_mask"].sum(1).tolist() == lengths.tolist()
    order = [torch.cat([b["labels"] for b in taskdata.iter_batches(
        enc, idx, 16, generator=torch.Generator().manual_seed(7))]) for _ in range(2)]
    assert torch.equal(order[0], order[1])
    assert sorted(order[0].tolist()) == sorted(enc.labels[:100].tolist())


def test_pairs_get_token_types(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPEFT_CACHE", str(tmp_path))
    raw = taskdata.RawData((("a question", "an answer"), ("b", "c")), np.array([0, 1]),
                           ("0", "1"), "test-pairs")
    enc = taskdata.encode(raw, tokenizer, 16)
    assert enc.token_type_ids is not None
    assert int(enc.token_type_ids[0].max()) == 1


def test_default_experiment_data_needs_no_network():
    cfg = ExperimentConfig.from_dict({})
    assert cfg.data.source == "builtin:trec6"
