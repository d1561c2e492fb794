"""Training: data sets, models, losses, alternating optimisation, export, evaluation."""
