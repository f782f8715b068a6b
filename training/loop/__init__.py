"""The training loop: data views and pair sampling, the trainer, distributed helpers and plots."""
