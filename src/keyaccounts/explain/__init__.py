"""Per-account explanations: exact additive contributions and plain-words reasons.

    from keyaccounts.explain import contributions, check_additivity, top_reasons, explain_accounts
    C = contributions(churn_model, X)                 # one column per model input + "bias"
    check_additivity(churn_model, X, C)               # max |sum(C) - margin|, ~1e-6 or better
    R = explain_accounts(churn_model, X, raw=features, kind="churn", reasons="top:1000")
    R.loc["C000042", "reasons_up"]                    # 'no purchase for 142 days; buys 0.1 times a month'

Contributions (`contributions`) are exact, in the margin of the model's final estimator:
- tree part (XGBoost last step): TreeSHAP via `Booster.predict(pred_contribs=True)` (the
  path-dependent algorithm over the trees' own cover, so `background` is not used); the margin is
  `predict(..., output_margin=True)`: log-odds for `binary:logistic`, log(E[spend]) for `reg:gamma`.
- linear part (an estimator with `coef_`, e.g. LogisticRegression): exact linear SHAP
  coef * (z - reference) with bias = intercept + coef . reference, where z are the final
  estimator's inputs (after imputing/scaling) and the reference is the training population's
  mean of z, stored in the model when it is trained (`fix_reference`; for a StandardScaler
  fitted with the model that mean is 0). The reference never depends on the rows scored, so an
  account's reasons are the same in every list. The margin is `decision_function` (the log
  link's linear predictor for gamma/Poisson GLMs).
- Calibrated wrappers (CalibratedClassifierCV(FrozenEstimator(model))): the underlying frozen
  model's margin is explained. Sigmoid and isotonic calibration are monotone maps of that
  margin, so the order and direction of the reasons are the calibrated probability's too.
- TwoPartValue (value model): `part="spend"` (default) explains the E[spend | buy] regressor
  (tree margin = log E[spend | buy]); `part="buy"` the P(buy) logistic part. Their product
  (expected value) has no exact additive decomposition in either margin.
- StageRateBaseline (refused deal model): one contribution, stage_at_as_of = logit(rate of the
  stage) - logit(overall rate), bias = logit(overall rate).

Reasons (`top_reasons`) group model inputs by what they say about the account (the reason
group declared per feature in `keyaccounts.features.registry`:
e.g. recency_over_tenure, p_alive, expected_purchases all speak of recency), sum the exact
contributions inside each group (sums stay exact), and phrase the strongest groups with the
account's RAW values from the `build_features` / deal frame ("no purchase for 142 days").
`reasons_up` push the score up (for churn: risks), `reasons_down` push it down (for churn:
strengths); for value and deal models up is a strength and down a risk. Order: |contribution|
descending, ties by reason key (alphabetical), so the output is deterministic.
"""
from __future__ import annotations

from ..features.registry import reason_key
from .contributions import (
                            BIAS,
                            KINDS,
                            REFERENCE_ATTR,
                            check_additivity,
                            contributions,
                            fix_reference,
                            float32_margin_error_bound,
                            global_importance,
                            margin,
                            reference_points,
)
from .phrases import REASON_PHRASES
from .reasons import explain_accounts, select_rows, top_reasons

__all__ = ["BIAS", "KINDS", "REFERENCE_ATTR", "contributions", "fix_reference", "reference_points", "margin",
           "check_additivity", "float32_margin_error_bound", "REASON_PHRASES", "reason_key", "top_reasons",
           "explain_accounts", "select_rows", "global_importance"]
