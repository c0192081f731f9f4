"""Watching the model in use: batch scoring of unlabelled recordings and shadow comparison of a challenger."""
from spira_lib.scoring.batch import ScoredBatch, read_predictions, score_batch
from spira_lib.scoring.run import LocalScoring, ScoreOutcome, run_scoring, score
from spira_lib.scoring.shadow import ShadowReport

__all__ = ["LocalScoring", "ScoreOutcome", "ScoredBatch", "ShadowReport", "read_predictions", "run_scoring", "score", "score_batch"]
