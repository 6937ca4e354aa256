"""Export a candidate as a self-describing artifact directory, and read one back.

Layout of an export directory:

    autopeft_candidate.yaml   always: the candidate, the model, what the folder holds, and
                              provenance (autopeft and library versions, space fingerprint,
                              seed, trial, metrics: whatever the caller passed)
    adapter_config.json ...   the library artifact, at the top so the library loads the folder:
                              - peft (lora, ia3, prompt, prefix at all layers, alone):
                                what PeftModel.save_pretrained writes; with weights it includes
                                the classifier head (modules_to_save), so
                                PeftModel.from_pretrained(base, dir) gives the trained logits
                              - AdapterHub `adapters` (bottleneck adapters, prefixes on a layer
                                subset, mixtures): what model.save_adapter(dir, name) writes
                                (adapter_config.json, pytorch_adapter.bin and the head's
                                head_config.json + pytorch_model_head.bin); load with
                                model.load_adapter(dir) after adapters.init(model)
                              - transformers (full fine-tuning, with weights): the whole model
                                as save_pretrained writes it (config.json, model.safetensors);
                                AutoModelForSequenceClassification.from_pretrained(dir) loads
                                it. Not a PEFT adapter. Without weights nothing is written.
                              - none for BitFit alone and the head-only baseline
    autopeft_weights/         with trained weights only: every trainable tensor (modules and
                              head) as autopeft.methods.Built.save writes it; autopeft rebuilds
                              the candidate and loads these, which also covers the parts no
                              library format holds (BitFit biases, autopeft's own parallel
                              adapter beside a serial one). Not written for full fine-tuning,
                              whose transformers files already hold every weight.

What each module type writes is its plug-in's say (autopeft.moduletypes.<type>:
peft_config / adapters_configs, in_library_artifact, export_own).

The yaml's `artifact.complete` says whether the library artifact alone reproduces the
trained model. Without weights (`built=None`) only configs are written: the peft config is
built with peft's config classes exactly as autopeft.methods builds it (target_modules are
exact module names, found on a weightless meta-device copy of the model; we do not use
peft's layers_to_transform, which matches the first integer after its pattern and is
therefore inexact, see autopeft.methods._peft), the adapters config likewise, with
AdapterHub's config classes, in its saved-file form.

An export never writes into a non-empty directory: it is assembled in a temporary sibling
and renamed into place, so a failure leaves nothing half-written.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from autopeft.candidate import Candidate
from autopeft.exceptions import ExportError
from autopeft.version import __version__, library_versions

logger = logging.getLogger(__name__)

CANDIDATE_FILE = "autopeft_candidate.yaml"
WEIGHTS_DIR = "autopeft_weights"
FORMAT = "autopeft-export/1"


def export_candidate(candidate: Candidate, out_dir: str | Path, *, model_ref: str | None,
                     provenance: Mapping[str, Any] | None = None, built: Any = None) -> Path:
    """Write `candidate` (and, with `built`, its trained weights) to the new directory `out_dir`.

    Raises ExportError when `out_dir` exists and is not empty, and CandidateError when the
    candidate cannot be built on the model.
    """
    from autopeft.methods.validate import validate
    from autopeft.models import model_info
    from autopeft.moduletypes import backend_for, get

    out = Path(out_dir)
    _refuse_non_empty(out)
    info = model_info(model_ref)
    if candidate.num_layers is None:
        candidate = Candidate(candidate.modules, candidate.hyper, info.num_layers)
    if built is not None and built.candidate.modules != candidate.modules:
        raise ExportError(f"the weights passed for export belong to {built.candidate.summary()}, "
                          f"not to {candidate.summary()}.\n  fix: build the exported candidate")
    validate(candidate, info)
    backend = built.backend if built is not None else backend_for(candidate)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        artifact = _write_library_artifact(tmp, candidate, info, backend, built)
        if built is not None and not any(get(m.type).weights_in_library_artifact
                                         for m in candidate.modules):
            built.save(tmp / WEIGHTS_DIR)
            artifact["autopeft_weights"] = WEIGHTS_DIR
        doc = {
            "format": FORMAT,
            "summary": candidate.summary(),
            "key": candidate.key(),
            "candidate": candidate.to_dict(),
            "model": {"ref": info.ref, "family": info.family, "model_type": info.model_type,
                      "num_layers": info.num_layers, "hidden_size": info.hidden_size,
                      "path": info.path, "num_labels": _num_labels(built)},
            "artifact": artifact,
            "provenance": _provenance(provenance, info.ref),
        }
        _write_yaml(tmp / CANDIDATE_FILE, doc)
        _refuse_non_empty(out)  # nobody wrote there meanwhile
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("exported %s (%s%s) to %s", candidate.summary(), artifact["library"] or "autopeft",
                " with weights" if built is not None else ", configs only", out)
    return out


def load_exported(path: str | Path) -> tuple[Candidate, dict[str, Any]]:
    """(candidate, provenance) from an export directory or its autopeft_candidate.yaml.

    The provenance always has "model" (the model reference the candidate was exported for)
    and "artifact" (what the directory holds, as described in the module docstring).
    """
    from autopeft import yamlio

    p = Path(path)
    file = p if p.is_file() else p / CANDIDATE_FILE
    if not file.is_file():
        raise ExportError(f"{file} does not exist, so {p} is not an autopeft export.\n"
                          f"  fix: pass a directory written by `autopeft export` / `finalize` "
                          f"(it holds {CANDIDATE_FILE})")
    doc, lines = yamlio.read_yaml_file(file, ExportError)  # the same strict reader
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "candidate" not in doc:
        got = doc.get("format") if isinstance(doc, dict) else None
        raise yamlio.located(ExportError, str(file), f"not an autopeft export of format "
                             f"{FORMAT!r} (format: {got!r})", line=lines.at("format"),
                             path="format" if isinstance(doc, dict) else None,
                             fix=f"re-export it with this autopeft version ({__version__})")
    try:
        candidate = Candidate.from_dict(doc["candidate"])
    except (ValueError, TypeError, KeyError) as exc:
        raise yamlio.located(ExportError, str(file), f"{exc}", line=lines.at("candidate"),
                             path="candidate", fix="correct the module entry (see "
                             "autopeft.moduletypes) or re-export the candidate") from exc
    prov = dict(doc.get("provenance") or {})
    if prov.get("model") is None:
        prov["model"] = (doc.get("model") or {}).get("ref")
    prov["artifact"] = doc.get("artifact") or {}
    return candidate, prov


# --------------------------------------------------------------------------- internals

def _refuse_non_empty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is a file" if not out.is_dir() else "exists and is not empty"
        raise ExportError(f"the output directory {out} {what}; nothing was exported.\n"
                          f"  fix: pass --out with a new directory (or remove {out} first)")


def _num_labels(built: Any) -> int | None:
    config = getattr(getattr(built, "model", None), "config", None)
    return None if config is None else int(getattr(config, "num_labels", 0)) or None


def _plain(value: Any) -> Any:
    """JSON/YAML-safe copy (records, tuples and paths become plain data)."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return json.loads(json.dumps(value, default=str))


def _provenance(given: Mapping[str, Any] | None, model_ref: str) -> dict[str, Any]:
    prov: dict[str, Any] = {k: _plain(v) for k, v in (given or {}).items()}
    if prov.get("model") is None:  # a study's experiment may leave the model to the default
        prov["model"] = model_ref
    prov["autopeft_version"] = __version__
    prov["library_versions"] = library_versions()  # what wrote the files, whatever was given
    prov["exported_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return prov


def _write_yaml(file: Path, doc: dict[str, Any]) -> None:
    import yaml

    header = ("# autopeft export: the candidate, what this folder holds and where it came from.\n"
              "# Retrain it with `autopeft train <this folder>`.\n")
    file.write_text(header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))


def _write_library_artifact(tmp: Path, candidate: Candidate, info: Any, backend: str,
                            built: Any) -> dict[str, Any]:
    """The peft / adapters / own files; returns the yaml's `artifact` section."""
    from autopeft.methods._adapters import mixture_parts
    from autopeft.moduletypes import get

    main = [m for m in candidate.modules if not get(m.type).additive]
    parts = mixture_parts(main) if backend == "adapters" else frozenset()
    own = [m.type for m in candidate.modules if not get(m.type).in_library_artifact(m, parts)]
    library = load = None
    if backend == "peft":
        if built is not None:
            built.model.save_pretrained(str(tmp))
        else:
            _peft_config(candidate, info).save_pretrained(str(tmp))
        _sort_module_lists(tmp / "adapter_config.json")
        load = ("peft.PeftModel.from_pretrained(AutoModelForSequenceClassification"
                ".from_pretrained(<model>, num_labels=<n>), <this folder>)")
        library = "peft"
    elif backend == "adapters":
        from autopeft.methods._adapters import NAME

        if built is not None:
            built.model.save_adapter(str(tmp), NAME)
        else:
            (tmp / "adapter_config.json").write_text(
                json.dumps(_adapters_config(candidate, info), indent=2, sort_keys=True))
        load = ("adapters.init(model); model.set_active_adapters(model.load_adapter(<this folder>))"
                "  with model = AutoModelForSequenceClassification.from_pretrained(<model>)")
        library = "adapters"
    elif backend == "own" and main:  # full fine-tuning: its plug-in writes what it can
        written = get(main[0].type).export_own(tmp, main[0], built, info)
        if written is not None:
            library, load = written["library"], written["load"]
    # "own" BitFit alone and "none" (head only): no library format holds these
    files = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file())
    return {
        "library": library,
        "weights": built is not None,
        # the library artifact alone reproduces the model (with weights: the trained one)
        "complete": library is not None and not own,
        "not_in_library_artifact": own,
        "files": files,
        "load": load,
    }


def _sort_module_lists(file: Path) -> None:
    """peft keeps target_modules as a set and saves it in hash order; sort it so that the
    same candidate always gives the same file."""
    doc = json.loads(file.read_text())
    for key in ("target_modules", "feedforward_modules"):
        if isinstance(doc.get(key), list):
            doc[key] = sorted(doc[key])
    file.write_text(json.dumps(doc, indent=2, sort_keys=True))


def _meta_model(info: Any) -> Any:
    """The model's module tree on the meta device: names and shapes, no weights, no disk."""
    from autopeft._imports import require
    from autopeft.models import TINY_CONFIGS

    torch = require("torch")
    transformers = require("transformers")
    if info.ref in TINY_CONFIGS:
        cfg = dict(TINY_CONFIGS[info.ref])
        config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    else:
        config = transformers.AutoConfig.from_pretrained(info.path or info.ref)
    with torch.device("meta"):
        return transformers.AutoModelForSequenceClassification.from_config(config)


def _context(candidate: Candidate, info: Any) -> Any:
    """The BuildContext of a weightless copy of the model (names and heads, no generator)."""
    from autopeft.moduletypes import BuildContext

    model = _meta_model(info)
    return BuildContext(info, candidate, tuple(n for n, _ in model.named_modules()),
                        tuple(h for h in info.head_names if hasattr(model, h)))


def _peft_config(candidate: Candidate, info: Any) -> Any:
    """The peft config autopeft.methods builds for this candidate, by the same plug-in call
    (tests/test_export.py checks the two agree)."""
    from autopeft.methods._peft import peft_config
    from autopeft.moduletypes import get

    m = next(m for m in candidate.modules if not get(m.type).additive)
    return peft_config(m, _context(candidate, info),
                       base_model_name_or_path=info.path or info.ref)


def _adapters_config(candidate: Candidate, info: Any) -> dict[str, Any]:
    """adapter_config.json as model.save_adapter writes it (AdapterHub's build_full_config)."""
    from types import SimpleNamespace

    from autopeft._imports import require
    from autopeft.methods._adapters import NAME, adapters_config, mixture_parts
    from autopeft.moduletypes import get

    ad = require("adapters")
    from adapters.configuration.model_adapters_config import build_full_config
    from transformers.models.auto.modeling_auto import \
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    from autopeft.moduletypes import BuildContext

    modules = [m for m in candidate.modules if not get(m.type).additive]
    # AdapterHub's configs need no module names (leave_out is by layer index)
    ctx = BuildContext(info, candidate, (), (), parts=mixture_parts(modules))
    config, _ = adapters_config(ad, modules, ctx)
    model_config = SimpleNamespace(model_type=info.model_type, hidden_size=info.hidden_size)
    return build_full_config(
        config, model_config, name=NAME, model_name=info.path or info.ref,
        model_class=MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.get(info.model_type, ""))
