"""Stream services: each wires one stage to the Kafka loop with its policy watch, from settings.

    classify     posts → small model → verdicts, adjudication requests, shadow decisions
    adjudicate   adjudication requests → frontier model → verdicts, labels
    feedback     labels → the retraining dataset

``modcascade worker NAME``, the ``workers/`` entry points and the main job all run these.
"""

from pipeline.services.adjudicate import run_adjudicate_worker
from pipeline.services.classify import run_classify_worker
from pipeline.services.feedback import run_feedback_worker

__all__ = ["run_adjudicate_worker", "run_classify_worker", "run_feedback_worker"]
