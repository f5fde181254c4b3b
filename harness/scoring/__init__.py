"""CLIP scores of stored outputs with open-clip-torch, for every challenge kind.

* :mod:`harness.scoring.weights` – finding weights offline (tags in the HF cache, files, ``hf-hub:``,
  ``local-dir:``) with clear errors instead of network retries or random weights;
* :mod:`harness.scoring.backbone` – the loaded model: preprocessing, tokenizer, normalised embeddings;
* :mod:`harness.scoring.prompts` – sentence chunks of prompts longer than CLIP's context;
* :mod:`harness.scoring.metrics` – the formulas and the metric table (names, units, direction);
* :mod:`harness.scoring.pixels` – decoding, inpainting masks, crops, preservation outside the mask;
* :mod:`harness.scoring.plan` / :mod:`harness.scoring.kinds` – what each output needs and gets;
* :mod:`harness.scoring.pipeline` – batching, prefetching, the embedding cache, writing rows;
* :mod:`harness.scoring.summary` – mean and 95 % interval per target and metric.

torch and open_clip are imported only when a model is loaded.
"""

from harness.scoring.backbone import Backbone, BackboneSpec, ScorerInfo, load_backbone
from harness.scoring.metrics import METRICS, MetricInfo
from harness.scoring.pipeline import ScoreOptions, ScoreReport, score_runs
from harness.scoring.summary import summarise_scores, summary_records
from harness.scoring.weights import DEFAULT_MODEL, DEFAULT_PRETRAINED

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_PRETRAINED", "METRICS", "Backbone", "BackboneSpec", "MetricInfo", "ScoreOptions",
    "ScoreReport", "ScorerInfo", "load_backbone", "score_runs", "summarise_scores", "summary_records",
]
