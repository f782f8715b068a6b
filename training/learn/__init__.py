"""Learn how FAA works: train on a synthetic world in the background and stream what happens.

``make_job(world, method, switches_off, seed)`` checks a choice;
``LearnRunner.stream(job)`` trains it in a separate process and yields a
``Progress`` per change (rounds from the Trainer's metrics, then the final
test numbers, projections and attention); the menu, sizes and limits are
``training/configs/learn.yaml``. The Gradio tab (``app_ui.learn_tab``) and
the notebook tour (``notebooks/faa_tour.ipynb``) are its two users.
"""

from .choices import ChoiceError, LearnJob, make_job, method_names, settings, switch_names, world_names
from .runner import LearnRunner, Progress, default_runner
from .worker import ensure_world

__all__ = [
    "ChoiceError",
    "LearnJob",
    "LearnRunner",
    "Progress",
    "default_runner",
    "ensure_world",
    "make_job",
    "method_names",
    "settings",
    "switch_names",
    "world_names",
]
