"""The last encoder layer computed for the [CLS] position only.

A BERT-family classifier reads one position of the last layer: the pooler (BERT) or the
classification head (RoBERTa, Electra) takes `sequence_output[:, 0]`.  In the last layer
every other position's query, attention output, feed-forward and layer norms are computed
and thrown away: for MiniLM that is ~83 % of the last layer (per token a layer costs
4·h² + 2·h·ffn multiply-adds; keys and values, h² each, are all the other positions still
need), i.e. ~14 % of a forward and of the backward through an adapted last layer.

So the trial model's last layer runs as a cross-attention of the [CLS] state over the
whole sequence: the layer's own self-attention module is called with
`hidden_states = h[:, :1]` and `encoder_hidden_states = h`, which in transformers' BERT
(and AdapterHub's adapter-aware subclasses of it) takes the query from the first and the
keys and values from the second, through the same (possibly LoRA/IA3-wrapped) projections;
the attention output, adapters and feed-forward then run on the one position.  The
attention mask keeps its key dimension ([B, 1, T, T] -> its first query row).

What changes: nothing the loss sees.  In eval mode the logits equal the full layer's up to
floating-point summation order (tests/test_fasttrial.py compares them per module type); in
training, dropout in the last layer draws masks for one position instead of all (the same
distribution for the position that matters).  The encoder's output is [B, 1, H] instead of
[B, T, H]; nothing downstream of the pooler/head reads the rest.

Which candidates: those whose modules act per position and leave attention itself alone
(LoRA, rsLoRA, DoRA, adapters, parallel adapters, IA3, BitFit, full fine-tuning, or none)
on BERT-family encoders.  Prefix tuning edits keys and values inside the attention, and
prompt tuning prepends positions: they keep the full last layer.
"""
from __future__ import annotations

from typing import Any

from autopeft.candidate import Candidate
from autopeft.evaluation.prefix_cache import CACHEABLE_TYPES, FAMILIES, backbone_of


# per-position modules beyond the cache's types: their lower layers train (no cache), but
# the last layer's other positions are still unused
PER_POSITION_TYPES = CACHEABLE_TYPES | {"rslora", "dora", "full"}


def applies(candidate: Candidate, info: Any) -> bool:
    """Whether the candidate's trial may compute its last layer at [CLS] only."""
    return info.family in FAMILIES and all(m.type in PER_POSITION_TYPES
                                           for m in candidate.modules)


def cls_only_last_layer(model: Any) -> bool:
    """Make the model's last encoder layer compute position 0 only (in place).

    Returns False (and changes nothing) when the last layer is not a BERT-style layer
    (e.g. it was replaced by the frozen-prefix cache's pass-through).
    """
    layers = backbone_of(model).encoder.layer
    layer = layers[len(layers) - 1]
    attention = getattr(layer, "attention", None)
    if attention is None or not hasattr(layer, "feed_forward_chunk") or \
            getattr(layer, "is_decoder", False):
        return False

    def forward(hidden_states: Any, attention_mask: Any = None, *args: Any,
                **kwargs: Any) -> tuple:
        first = hidden_states[:, :1]
        mask = attention_mask
        if mask is not None and mask.dim() == 4 and mask.shape[2] > 1:
            mask = mask[:, :, :1, :]           # the [CLS] query's row: every key, its padding
        context = attention.self(first, attention_mask=mask,
                                 encoder_hidden_states=hidden_states)[0]
        out = attention.output(context, first)
        return (layer.feed_forward_chunk(out),)

    # an instance attribute: the parameter names (and checkpoints) are unchanged
    layer.forward = forward
    return True
