"""Which micrograph comes next: acquisition order, by category, or most uncertain first.

"Most uncertain first" is active learning's cheapest rule: label first the micrographs a
label would teach the model most — those the run is least sure of. A micrograph's
uncertainty adds three signs of doubt, each in [0, 1]:

- ``1 - confidence``: the run's confidence in its category (a failed micrograph has none
  and comes last: it has no image to label);
- disagreement between methods: the model and the weight-free classifier (``wf_category``)
  put it in different categories;
- disagreement between squares: the fraction of its squares whose own call in a group is
  not the micrograph's, averaged over the groups (from the per-square predictions).
"""

from __future__ import annotations

import pandas as pd

from miffi.classify.combine import CATEGORIES
from miffi.export.overrides import final_category
from miffi.labels import GROUPS
from miffi.review import ORDERS


def square_disagreement(predictions: pd.DataFrame) -> pd.Series:
    """Per micrograph, the mean over groups of the fraction of squares that disagree with
    the majority of its squares (0: all squares agree)."""
    shares = []
    for group, labels in GROUPS.items():
        calls = predictions[list(labels)].to_numpy().argmax(axis=1)
        frame = pd.DataFrame({"micrograph": predictions["micrograph"].to_numpy(), "call": calls})
        majority = frame.groupby("micrograph")["call"].agg(lambda c: c.value_counts().iloc[0] / len(c))
        shares.append((1.0 - majority).rename(group))
    return pd.concat(shares, axis=1).mean(axis=1)


def uncertainty(results: pd.DataFrame, predictions: pd.DataFrame | None = None) -> pd.Series:
    """The uncertainty of each row of ``results`` (see the module's docstring); NaN for
    micrographs without a call."""
    score = 1.0 - results["confidence"].astype(float)
    if "wf_category" in results:
        score = score + (results["wf_category"] != results["category"]).astype(float)
    if predictions is not None and len(predictions):
        spread = square_disagreement(predictions)
        score = score + results["micrograph"].map(spread).fillna(0.0).to_numpy()
    return score.where(results["category"].notna())


def order_of(frame: pd.DataFrame, order: str, doubt: pd.Series | None = None) -> list[int]:
    """Row positions of ``frame`` in the order asked for; ties (and rows without a
    category or an uncertainty) keep acquisition order, at the end."""
    position = pd.Series(range(len(frame)), index=frame.index)
    if order == "acquisition" or "category" not in frame:
        return position.tolist()
    if order == "category":
        rank = final_category(frame).map({c: i for i, c in enumerate(CATEGORIES)}).fillna(len(CATEGORIES))
        keys = pd.DataFrame({"rank": rank.to_numpy(), "position": position.to_numpy()})
        return keys.sort_values(["rank", "position"], kind="stable")["position"].tolist()
    if order == "uncertain":
        if doubt is None:
            raise ValueError("the uncertain order needs the uncertainty of each micrograph")
        keys = pd.DataFrame({"doubt": doubt.fillna(-1.0).to_numpy(), "position": position.to_numpy()})
        return keys.sort_values(["doubt", "position"], ascending=[False, True], kind="stable")["position"].tolist()
    raise ValueError(f"unknown order {order!r} (orders: {', '.join(ORDERS)})")
