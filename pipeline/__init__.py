"""xmr: the importable library behind the DVC stages (data, detection, text, models, losses, metrics, training)."""
