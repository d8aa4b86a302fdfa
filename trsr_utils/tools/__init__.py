"""Floor 6, tools: the command-line entry's commands (pipeline, preflight, plan, bench, site, results pages)."""
