"""The cost of a candidate relative to its base model: parameters, FLOPs, latency, mergeability.

Two paths that agree (tests/test_cost.py checks them against each other on MiniLM):

* `measure(built, base)` (measured.py): counts the trainable tensors of a built model, counts
  forward FLOPs with torch.utils.flop_counter.FlopCounterMode on a fixed reference batch, and
  measures the latency increase against the experiment's limit (latency.py: 0 untimed for
  modules that merge, else alternating candidate/base pairs until a 99 % interval decides).
  The evaluator owns one CostMeter per worker set-up and calls its `measure(built,
  latency_limit=...)` once per trial: the meter caches the base model's counts and bounded
  LRUs of FLOP counts and latency estimates per architecture, and `close()` frees them
  (and a base copy moved to another device).
* `estimate(candidate, info)` (analytic.py): the same parameter count from ModelInfo shapes
  alone, and FLOPs from formulas, without torch. Each type's formulas (with their sources)
  live in its plug-in, autopeft.moduletypes.<type>.
* `summarize_space(bound, model_ref)` (summary.py): the cost range of a space, from `estimate`.

Definitions (the choices are ours; the paper reports "% of parameters" without saying more):

* trainable_params: trainable PEFT parameters, *excluding* the classifier head. The head
  (BERT `classifier`, GPT-2/Llama `score`) is trained by every candidate, the head-only
  baseline included, so it does not tell candidates apart; it is reported as `head_params`.
* base_params: every parameter of the pretrained model (embeddings, layers, BERT's pooler),
  excluding the classification head.
* params_ratio = trainable_params / base_params.
* FLOPs count matrix multiplications only (matmul, linear, attention scores and mixing), the
  convention of FlopCounterMode and of Kaplan et al. 2020 (Scaling Laws, Table 1): 2 FLOPs per
  multiply-accumulate; elementwise work (IA3's scaling, biases, norms, activations) is free.
  "Per token" divides a forward's FLOPs by the number of *input* tokens (batch * seq_len), so
  prompt tokens, which lengthen the sequence, show up as overhead.
* Merged FLOPs: LoRA (W + BA folds into W, Hu et al. 2021 sec. 4.1), IA3 (the scaling folds
  into the weights it rescales, Liu et al. 2022 sec. 3.3) and BitFit (it changes existing
  biases) add nothing once merged; so do DoRA and rsLoRA (one matrix again) and full
  fine-tuning (it adds nothing: the fine-tuned model is the base architecture). Adapters,
  parallel adapters, prefixes, prompts and the gated mixtures (UniPELT's gates depend on the
  input) cannot merge. Full fine-tuning trains every base weight: params_ratio = 1.0.
"""
from __future__ import annotations

from autopeft.cost.analytic import (MERGEABLE, SEQ_LEN, base_flops, base_param_count, estimate,
                                    head_param_count, is_mergeable, module_extra_flops,
                                    module_params, trainable_params)
from autopeft.cost.measured import BATCH, CostMeter, measure, split_params
from autopeft.cost.summary import summarize_space

__all__ = ["estimate", "measure", "summarize_space", "is_mergeable", "MERGEABLE",
           "base_param_count", "head_param_count", "module_params", "module_extra_flops",
           "base_flops", "trainable_params", "split_params", "CostMeter", "SEQ_LEN", "BATCH"]
