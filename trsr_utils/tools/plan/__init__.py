"""What a run costs: tokens, FLOPs, memory and hours per stage, on a given accelerator (notebook 10).

    python -m trsr_utils plan --profile paper-mind [--gpu a100-80gb|a100-40gb|h100-80gb|h200|cpu] [--gpus N]
                              [--utilization 0.4] [--out DIR] [--json]

The model is a roofline, written out so that it can be redone by hand:

* ``N`` = the parameters of the transformer layers (the matrices every token goes through; the input
  embedding is a table lookup and costs no FLOPs). ``L`` layers, hidden size ``d``, vocabulary ``V``.
* **Prefill** (a prompt read in one forward pass, batched): ``2·N`` FLOPs per token (one multiply and one add
  per weight) plus attention, ``4·L·d·c`` per token that attends to ``c`` earlier tokens (the scores ``QKᵀ`` and
  the weighted sum ``AV``), about ``2·L·d·s²`` for a whole prompt of ``s`` tokens. Only the last position's
  logits are computed, so the output layer is left out. Time = FLOPs / (peak FLOP/s × utilisation).
* **Decoding** (one new token per sequence per step): the same ``2·N + 4·L·d·c`` FLOPs plus the output layer,
  ``2·V·d``, per token; but a step with ``B`` sequences must also read *every weight once* and each sequence's
  key/value cache, so its time is ``max(FLOPs of the B tokens / FLOP/s, bytes read / bandwidth)``. With a
  batch of 16-32 that is the bytes: decoding is memory-bandwidth bound. A batch runs until its longest
  answer ends, so its steps are the longest answer's tokens (the finished rows are padding).
* **Training with LoRA** (frozen base weights): forward ``2·N`` + backward ``2·N`` per token. The backward
  pass computes the gradient with respect to the activations through every frozen matrix (``2·N``), but no
  gradient for the frozen weights themselves (the ``2·N`` a full fine-tune adds: the ``6·N`` rule of thumb);
  LoRA's own matrices add about ``6·r·(d_in + d_out)`` per adapted matrix, under 1% here. Gradient
  checkpointing recomputes the forward: ``6·N``.
* **Memory**: the weights at their precision (bitsandbytes 8-bit/4-bit: 1 or 0.5 byte per layer weight; the
  embedding and output layer stay in 16 bits), the key/value cache of a batch at its longest sequence
  (``2·L·n_kv·d_head`` values per token), and for training LoRA's parameters, gradients and AdamW moments
  (16 bytes per trainable parameter in float32) plus the activations kept for the backward pass
  (``34·s·b·L·d`` bytes in 16 bits, Korthikanti et al. 2022 without the attention scores SDPA does not keep:
  a rough upper bound, since frozen weights need no stored inputs).

Peak FLOP/s and bandwidth come from the vendors' datasheets for GPUs (dense bf16, no sparsity) and from a
measurement for ``cpu`` (a matrix product at the model's own shapes, and a large array read), so a CPU plan
needs no utilisation factor. Token counts come from the profile's settings and the data statistics: the
run directory's own results where they exist (users, history lengths, tokens per block, the summarizer's
measured prompt and answer tokens per call, the retries it needed), otherwise the paper's Table 1
statistics (MIND, Amazon-M2) or this package's measured MovieLens-100K figures, each row saying which.

Model loading is priced at :data:`LOAD_GBS`; a bitsandbytes-quantized model's compute time (prefill and decoding:
its kernels dequantize on the fly) is multiplied by :data:`DEFAULT_QUANT_SLOWDOWN` (reported for generation, with
its sources there; ``quant_slowdown`` sets your own); a serving
engine's generation is an extra, modelled column (:data:`ENGINE_BATCH`). Not modelled: tokenization, the non-LLM
baselines of notebook 07 (CPU work), Python overhead.

Read in this order: :mod:`.spec` (model shapes, bytes), :mod:`.devices` (datasheets, this CPU measured),
:mod:`.stats` (the data a run prices), :mod:`.work` (the work items), :mod:`.roofline` (their cost, the plan)
and :mod:`.report` (the plan against a run, the command line). ``trsr_utils.tools.plan`` re-exports their public names.
"""

from __future__ import annotations

from trsr_utils.tools.plan.devices import (DEFAULT_QUANT_SLOWDOWN, DEFAULT_UTILIZATION, ENGINE_BATCH, GB, GPUS,
                                           Hardware, LOAD_GBS, QUANT_SLOWDOWN_RANGE, hardware, measure_cpu)
from trsr_utils.tools.plan.spec import (BUILT_IN, BYTES, ModelSpec, kv_bytes_per_token, model_spec, spec_from_config,
                                        weight_bytes)
from trsr_utils.tools.plan.stats import (DATASET_STATS, Stats, data_stats, measured_training_tokens, plan_tokenizer,
                                         prompt_overheads, summarizer_batches)
from trsr_utils.tools.plan.work import Work, measured_summary_work, workload
from trsr_utils.tools.plan.roofline import (Plan, Precision, STAGE_NAMES, cost, engine_seconds, fit_table,
                                            multi_gpu_stages, plan, precision_of, sharded_seconds)
from trsr_utils.tools.plan.report import format_plan, main, measured_seconds, run_hardware, validate
