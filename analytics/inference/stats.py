"""The statistics of Aftershock in one namespace.

Value objects hold sufficient statistics (``n``, sums, sums of squares and cross products),
so a warehouse can aggregate and the tests run on the sums; every procedure is a pure
function returning a frozen result from :mod:`analytics.inference.results`, with an error
code instead of an exception on degenerate data.

=====================================  ===========================================
Sufficient statistics                  :class:`SampleStats`, :class:`PairStats`
Two-sample tests                       :func:`welch_test`, :func:`relative_effect`
Ratio metrics (delta method)           :func:`ratio_metric_stats`, :func:`ratio_welch_test`
Variance reduction                     :func:`cuped_adjust`, :func:`cuped_welch_test`
Multiple testing                       :func:`benjamini_hochberg`, :func:`holm_bonferroni`,
                                       :func:`two_stage_benjamini_hochberg`
Assignment health                      :func:`srm_test`
Whole distributions                    :func:`distribution_test`, :func:`psi`
Time course                            :func:`detect_change_points`, :func:`fit_half_life`
=====================================  ===========================================
"""

from __future__ import annotations

from analytics.inference.changepoints import detect_change_points
from analytics.inference.cuped import cuped_adjust, cuped_welch_test
from analytics.inference.curves import fit_half_life
from analytics.inference.distributions import distribution_test, psi
from analytics.inference.multiple import (
    benjamini_hochberg,
    holm_bonferroni,
    two_stage_benjamini_hochberg,
)
from analytics.inference.ratios import ratio_metric_stats, ratio_welch_test
from analytics.inference.results import (
    CupedAdjustment,
    DistributionTestResult,
    ErrorCode,
    HalfLifeResult,
    RatioEstimate,
    SrmResult,
    TestResult,
)
from analytics.inference.srm import SRM_THRESHOLD, srm_test
from analytics.inference.sufficient import PairStats, SampleStats
from analytics.inference.ttests import (
    compare_group_means,
    relative_effect,
    welch_satterthwaite_df,
    welch_test,
)

__all__ = [
    "SRM_THRESHOLD",
    "CupedAdjustment",
    "DistributionTestResult",
    "ErrorCode",
    "HalfLifeResult",
    "PairStats",
    "RatioEstimate",
    "SampleStats",
    "SrmResult",
    "TestResult",
    "benjamini_hochberg",
    "compare_group_means",
    "cuped_adjust",
    "cuped_welch_test",
    "detect_change_points",
    "distribution_test",
    "fit_half_life",
    "holm_bonferroni",
    "psi",
    "ratio_metric_stats",
    "ratio_welch_test",
    "relative_effect",
    "srm_test",
    "two_stage_benjamini_hochberg",
    "welch_satterthwaite_df",
    "welch_test",
]
