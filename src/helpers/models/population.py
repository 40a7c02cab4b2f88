"""One eligible population per target: the children staff will actually review.

Defined once in ``config/models.yaml`` (``populations.<target>``) and used everywhere:
training, tuning, the backtest, the baselines, the oracle, the review list and both review
arms. Ranking a child who cannot be in the list (or cannot be positive) flatters the model:
a preschooler on a school-reviewed list, a 7-year-old on a young-carer list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from helpers import MimamoriError
from helpers.config import ModelsSettings, PopulationSettings


@dataclass(frozen=True)
class Population:
    """The eligibility rules of one target, applied to panel (or scores) rows."""

    target: str
    settings: PopulationSettings

    @property
    def description(self) -> str:
        return self.settings.description or f"{self.target}: {self.age_text()}"

    def age_text(self) -> str:
        s = self.settings
        lo = "" if s.min_age is None else str(s.min_age)
        hi = "" if s.max_age is None else str(s.max_age)
        return f"{s.age_column} {lo}–{hi}" if lo or hi else "all ages"

    def rules(self, frame: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
        """(exclusion, mask) in order; a row is excluded by the first rule that applies."""
        s = self.settings
        out: list[tuple[str, np.ndarray]] = []
        known = f"known_{self.target}"
        if s.exclude_known and known in frame.columns:
            out.append(
                (
                    "既に把握済み（already known）",
                    pd.to_numeric(frame[known], errors="coerce").fillna(0).to_numpy() == 1,
                )
            )
        if s.min_age is not None or s.max_age is not None:
            if s.age_column not in frame.columns:
                raise MimamoriError(
                    f"population of {self.target}: column {s.age_column!r} "
                    "(config models.populations.*.age_column) not in the data"
                )
            age = pd.to_numeric(frame[s.age_column], errors="coerce").to_numpy(dtype=float)
            out.append(("年齢不明（age unknown）", np.isnan(age)))
            if s.min_age is not None:
                out.append((f"{s.min_age}歳未満（under {s.min_age}）", age < s.min_age))
            if s.max_age is not None:
                out.append((f"{s.max_age}歳超（over {s.max_age}）", age > s.max_age))
        if s.require_school or s.exclude_school_codes:
            school = (
                frame["school_code"].astype("string")
                if "school_code" in frame.columns
                else pd.Series(pd.NA, index=frame.index, dtype="string")
            )
            if s.exclude_school_codes:
                out.append(
                    (
                        "市外の学校（school outside the municipality）",
                        school.isin(list(s.exclude_school_codes)).fillna(False).to_numpy(bool),
                    )
                )
            if s.require_school:
                out.append(
                    (
                        "学校不明（no school on record）",
                        (school.isna() | (school.str.strip() == "")).fillna(True).to_numpy(bool),
                    )
                )
        return out

    def reasons(self, frame: pd.DataFrame) -> pd.Series:
        """Per row the first exclusion that applies (NA: eligible)."""
        reason = pd.Series(pd.NA, index=frame.index, dtype="string")
        for name, mask in self.rules(frame):
            reason = reason.mask(reason.isna() & mask, name)
        return reason

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """True for the eligible rows."""
        return self.reasons(frame).isna().to_numpy()

    def exclusions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """How many rows each rule excluded (first rule that applies), then the eligible count."""
        reason = self.reasons(frame)
        names = [n for n, _ in self.rules(frame)]
        rows = [{"exclusion": n, "children": int((reason == n).sum())} for n in names]
        return pd.DataFrame(rows, columns=["exclusion", "children"])

    def check(self, frame: pd.DataFrame, where: str) -> None:
        """Raise when any row is outside the population (a list must never rank such a child)."""
        reason = self.reasons(frame)
        bad = reason.notna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise MimamoriError(
                f"{where}: {int(bad.sum())} row(s) outside the eligible population of "
                f"{self.target} (first child_id {frame['child_id'].iloc[i]!r}: {reason.iloc[i]}); "
                "see config/models.yaml populations"
            )

    def record(self, n_evaluated: int) -> dict:
        """The ``population`` block of metrics.json."""
        s = self.settings
        return {
            "description": self.description,
            "age_column": s.age_column,
            "min_age": s.min_age,
            "max_age": s.max_age,
            "require_school": s.require_school,
            "exclude_school_codes": list(s.exclude_school_codes),
            "exclude_known": s.exclude_known,
            "n_evaluated": int(n_evaluated),
        }


def population_for(models: ModelsSettings, target: str) -> Population:
    """The configured population of ``target`` (an error naming the key when there is none);
    ``models`` is ``cfg.models``."""
    pops = models.populations
    if target not in pops:
        raise MimamoriError(
            f"config/models.yaml: key 'populations.{target}': no eligible "
            f"population for target {target!r} (have {sorted(pops)})"
        )
    return Population(target, pops[target])
