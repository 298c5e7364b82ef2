"""Solutions to the exercises of notebook 09."""

import re

CHECKPOINT = re.compile(r"epoch_(\d{4})\.keras")


def resume_epoch(file_names):
    """Epochs done by the newest epoch_NNNN.keras among file_names (0 when there is none)."""
    epochs = [int(m.group(1)) for name in file_names if (m := CHECKPOINT.fullmatch(name))]
    return max(epochs, default=0)


def learning_rate(step, base, warmup_steps, ratio, boundaries, factor):
    """Linear warm-up from ratio * base to base over warmup_steps, then x factor after each boundary."""
    rate = base * factor ** sum(step >= b for b in boundaries)
    if step < warmup_steps:
        rate *= ratio + (1 - ratio) * step / warmup_steps
    return rate
