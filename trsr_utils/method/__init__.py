"""Floor 3, method: what the paper does, one module per idea (text, prompts, chunking, the summarizer, scoring,
LoRA SFT, metrics, statistics, the summary audit). ``trsr_utils.data`` and ``trsr_utils.baselines`` sit on this
floor too."""
