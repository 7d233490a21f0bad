"""Numbers that say whether an explanation can be trusted.

* Localisation: :func:`positive_mass_in_mask`, :func:`pointing_game`,
  :func:`energy_by_region` (inside / near / far shares), and their per-class segmentation
  forms.
* Faithfulness: :func:`deletion` / :func:`insertion` curves (RISE), :func:`road`
  (remove-and-debias with :func:`noisy_linear_imputation`), :func:`confidence_change`
  (Grad-CAM++'s average drop and increase in confidence).
* Sanity: :func:`cascading_randomisation` (Adebayo et al.) with :func:`spearman_correlation`
  and :func:`ssim`.
* Dataset audit: :func:`audit_dataset` flags classes whose evidence sits in one fixed place
  off the class (the "marker in the corner" shortcut).
"""

from camlens.metrics.audit import ClassAudit, DatasetAudit, audit_dataset
from camlens.metrics.faithfulness import (
    ConfidenceChange,
    PerturbationCurve,
    RoadResult,
    confidence_change,
    deletion,
    insertion,
    road,
)
from camlens.metrics.familiar import (
    ARCC,
    CamMultImageConfidenceChange,
    DropInConfidence,
    IncreaseInConfidence,
    ROADCombined,
    ROADLeastRelevantFirst,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirst,
    ROADMostRelevantFirstAverage,
)
from camlens.metrics.imputation import noisy_linear_imputation
from camlens.metrics.localisation import dilate, pointing_game, positive_mass_in_mask
from camlens.metrics.quality import (
    complexity,
    faithfulness_correlation,
    max_sensitivity,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    sparseness,
    top_k_intersection,
)
from camlens.metrics.regions import (
    energy_by_region,
    segmentation_energy_by_region,
    segmentation_pointing_game,
)
from camlens.metrics.sanity import (
    RandomisationResult,
    cascading_randomisation,
    parameterised_modules,
)
from camlens.metrics.similarity import spearman_correlation, ssim

__all__ = [
    "ARCC",
    "CamMultImageConfidenceChange",
    "ClassAudit",
    "ConfidenceChange",
    "DatasetAudit",
    "DropInConfidence",
    "IncreaseInConfidence",
    "PerturbationCurve",
    "ROADCombined",
    "ROADLeastRelevantFirst",
    "ROADLeastRelevantFirstAverage",
    "ROADMostRelevantFirst",
    "ROADMostRelevantFirstAverage",
    "RandomisationResult",
    "RoadResult",
    "audit_dataset",
    "cascading_randomisation",
    "complexity",
    "confidence_change",
    "deletion",
    "dilate",
    "energy_by_region",
    "faithfulness_correlation",
    "insertion",
    "max_sensitivity",
    "noisy_linear_imputation",
    "parameterised_modules",
    "pointing_game",
    "positive_mass_in_mask",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "segmentation_energy_by_region",
    "segmentation_pointing_game",
    "sparseness",
    "spearman_correlation",
    "ssim",
    "top_k_intersection",
]
