"""Floor 2, store: how results are kept. The stage mechanism (fingerprints, result folders) and the LLM call
cache. Knows no particular stage (the score store, which scores with the methods, sits on the method floor)."""
