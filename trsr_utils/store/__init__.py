"""Floor 2, store: how results are kept. The stage mechanism (fingerprints, result folders), the LLM call
cache and the score store. Knows no particular stage."""
