"""Floor 5, report: what notebooks show (figures, widgets, the counterfactual explorer)."""
