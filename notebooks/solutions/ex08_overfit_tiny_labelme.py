"""Solution to the exercise of notebook 08."""


def learning_rate(step, base, warmup_steps, ratio, boundaries, factor):
    """Linear warm-up from ratio * base to base over warmup_steps, then x factor after each boundary."""
    rate = base * factor ** sum(step >= b for b in boundaries)
    if step < warmup_steps:
        rate *= ratio + (1 - ratio) * step / warmup_steps
    return rate
