"""Evaluation and calibration of the small model (`modcascade eval`, `modcascade calibrate`).

Only :mod:`scoring` loads a model; everything else is pure functions over a :class:`Scored` set (a probability
matrix and the true labels), so tests drive it with synthetic numbers.

    scoring       model directory + labelled examples -> Scored (CPU, transformers backend, progress bar)
    quality       worst slices, confusion matrix, reliability bins (on top of pipeline.training.metrics)
    cascade       a policy's bands over the scores through the real decide(): escalation, kept accuracy, cost
    report        EvalReport (the eval.json contract), evaluate_scores, evaluate_model
    calibration   temperature scaling and per-class isotonic calibration
    thresholds    one category's block_at / allow_below / cut point on a 0.001 grid; Wilson intervals
    bands         proposed bands for a policy under an escalation cap; the band-width sweep
    calibrate     CalibrationReport: split by text hash, fit, propose, measure on the held-out half
    policy_text   the proposed bands written into a copy of the policy YAML text, and its diff
    plots         reliability diagram, confusion matrix, escalation curve (PNG, Agg)
    render        Markdown reports and terminal tables
    command       the CLI commands: read inputs, write outputs
"""

from pipeline.evaluation.bands import BandProposal, Edges, Targets, propose_bands
from pipeline.evaluation.calibrate import CalibrateOptions, CalibrationReport, calibrate_scores
from pipeline.evaluation.report import EvalReport, evaluate_model, evaluate_scores
from pipeline.evaluation.scoring import Scored, ScoringOptions, score_examples

__all__ = [
    "BandProposal",
    "CalibrateOptions",
    "CalibrationReport",
    "Edges",
    "EvalReport",
    "Scored",
    "ScoringOptions",
    "Targets",
    "calibrate_scores",
    "evaluate_model",
    "evaluate_scores",
    "propose_bands",
    "score_examples",
]
