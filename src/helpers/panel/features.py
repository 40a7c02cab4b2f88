"""Features of one child as of one date, and the one registry that describes them.

Every feature is computed from records dated strictly before the as-of date (1 April of the
fiscal year). ``feature_registry`` is the single declarative list of columns (name, Japanese
label, description, source tables, window, type, role, missing treatment); the panel's
columns and ``feature_catalogue.csv`` are both generated from it, so they cannot drift apart.

Missing values are kept as NaN with a stated meaning (``MISSING_TREATMENTS``); nothing is
silently filled with 0. A zero is only claimed for a look-back window the child was resident
for in full; an in-mover (転入者) whose window starts before the move-in gets NaN instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from helpers import MimamoriError
from helpers.config import PanelSettings, Settings
from helpers.schema import load_schemas

if TYPE_CHECKING:
    from helpers.panel.coverage import Coverage

# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

MISSING_TREATMENTS = {
    "never_missing": "always defined for a row in the panel (NaN only when its source export "
    "is absent; data/panel/coverage.json lists absent sources)",
    "nan_unknown": "NaN = not recorded / unknown; kept as NaN (LightGBM handles it), never filled",
    "zero_if_observed": "0 only when the child was resident for the whole window; NaN when the "
    "window starts before the move-in (history incomplete); positives kept",
    "nan_not_applicable": "NaN = not applicable (not yet due, not school age, no earlier year)",
    "nan_no_household": "NaN when the child's household on the as-of date is unknown, when an "
    "item depends on a member whose resident row is missing, or (look-back "
    "windows) when the child moved in during the window: 0 is never claimed "
    "for history held by another municipality; positives kept",
    "nan_no_record": "NaN = no such record before the as-of date (e.g. months since last event)",
    "nan_unlinked": "code-less source (名寄せ, helpers.link): NaN when the record that would "
    "give the value is not linked to the child (no linked record where one is "
    "expected, or an unmatched record names the child as its candidate): "
    "unknown, never 0; 0 only when the source covers the window and nothing "
    "links or points to the child",
    "score_counts_known": "count of items known to be 1; unknown items add 0 and are counted in "
    "yc_items_unknown",
    "nan_window_unobserved": "NaN when the outcome window is not complete in the export: it ends "
    "after run.export_date, else after the consultation system's "
    "latest record",
}
ROLES = ("id", "info", "feature", "label", "known")
TYPES = ("binary", "count", "numeric", "category", "id")


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    label_ja: str
    description: str
    source_tables: tuple[str, ...]
    window: str
    type: str
    role: str
    missing_treatment: str

    def __post_init__(self) -> None:
        if self.role not in ROLES or self.type not in TYPES:
            raise MimamoriError(
                f"feature registry: {self.name}: bad role/type {self.role}/{self.type}"
            )
        if self.missing_treatment not in MISSING_TREATMENTS:
            raise MimamoriError(f"feature registry: {self.name}: unknown missing treatment")


# the columns of feature_catalogue.csv, in order: the registry entry's fields
CATALOGUE_COLUMNS = tuple(f.name for f in fields(FeatureSpec))


def _spec(
    name, label_ja, description, tables, window, type_, role="feature", missing="nan_unknown"
) -> FeatureSpec:
    if isinstance(tables, str):
        tables = (tables,)
    return FeatureSpec(name, label_ja, description, tuple(tables), window, type_, role, missing)


def window_names(panel_cfg: PanelSettings) -> list[str]:
    """Look-back windows as column suffixes: ``1fy``, ``3fy``, ..., ``ever``."""
    return [f"{int(w)}fy" for w in panel_cfg.windows] + ["ever"]


def _enum(table: str, field: str) -> list[tuple[str, str]]:
    return [(v.code, v.label) for v in load_schemas()[table].field(field).values]


YC_ITEMS: list[tuple[str, str, str, tuple[str, ...]]] = [
    (
        "yc_indep_support_ever",
        "自立支援医療（精神通院）申請歴あり（世帯員）",
        "A co-resident household member other than the child has ever had a 自立支援医療 精神通院 "
        "certificate starting before the as-of date (docs/domain.md §4 item 'applied for 自立支援医療 ever').",
        ("independence_support", "household_history"),
    ),
    (
        "yc_member_75plus",
        "75歳以上の世帯員あり",
        "A household member other than the child is aged 75 or over on the as-of date.",
        ("household_history", "residents"),
    ),
    (
        "yc_member_care_need",
        "要介護1〜5の世帯員あり",
        "A household member other than the child holds a 要介護1-5 certification on the as-of date.",
        ("long_term_care", "household_history"),
    ),
    (
        "yc_member_disability_handbook",
        "身体・精神障害者手帳所持の世帯員あり",
        "A household member other than the child holds a physical or mental-health handbook.",
        ("disability_handbooks", "household_history"),
    ),
    (
        "yc_foreign_member",
        "外国籍の世帯員あり",
        "A household member other than the child is a foreign national.",
        ("residents", "household_history"),
    ),
    (
        "yc_two_plus_under6",
        "5歳以下の子が2人以上（本人含む）",
        "Two or more household members aged 0-5 on the as-of date, the child included (a property "
        "of the household's care load, the same for every child in it).",
        ("residents", "household_history"),
    ),
    (
        "yc_public_assistance",
        "生活保護受給世帯",
        "The child's household (household pseudonym) receives public assistance on the as-of date.",
        ("public_assistance", "household_history"),
    ),
    (
        "yc_child_rearing_allowance",
        "児童扶養手当受給世帯",
        "A household member (the recipient) receives 児童扶養手当 on the as-of date.",
        ("allowances", "household_history"),
    ),
    (
        "yc_school_aid",
        "就学援助受給世帯",
        "A household member (the child included) was approved for school aid before the as-of date "
        "for the previous or current fiscal year.",
        ("school_aid", "household_history"),
    ),
    (
        "yc_no_nursery",
        "保育所・幼稚園等の在籍歴なし",
        "The child has no nursery/kindergarten enrolment starting before the as-of date; NaN for an "
        "in-mover who arrived aged 3 or over with no record here (preschool years elsewhere).",
        ("nursery_enrolment", "residents"),
    ),
    (
        "yc_member_indep_support",
        "自立支援医療（精神通院）受給中の世帯員あり",
        "A household member other than the child holds a current 自立支援医療 精神通院 certificate.",
        ("independence_support", "household_history"),
    ),
    (
        "yc_sibling_special_needs",
        "特別支援学級在籍のきょうだいあり",
        "Another child of the household was in a special-needs class in the previous fiscal year.",
        ("school_register", "household_history"),
    ),
]
YC_ITEM_NAMES = [name for name, *_ in YC_ITEMS]

# explicit indicators where a blank means "unknown", for models that cannot read NaN
# (logistic regression); LightGBM reads the NaN in the source column directly
MISSING_INDICATORS: list[tuple[str, str, str, tuple[str, ...], str]] = [
    (
        "miss_household",
        "世帯不明 [household unknown]",
        "No household span on the as-of date",
        ("household_history",),
        "hh_size",
    ),
    (
        "miss_birth_status",
        "出生記録なし [no birth record]",
        "No birth weight recorded",
        ("birth_status",),
        "birth_weight_g",
    ),
    (
        "miss_chk_y1m6",
        "1歳6か月児健診 記録なし [no 1y6m record]",
        "No 1y6m checkup before as-of",
        ("health_checkups",),
        "chk_y1m6_weight_kg",
    ),
    (
        "miss_chk_y3",
        "3歳児健診 記録なし [no 3y record]",
        "No 3y checkup before as-of",
        ("health_checkups",),
        "chk_y3_weight_kg",
    ),
    (
        "miss_absence_last_fy",
        "欠席日数 不明 [absence unknown]",
        "No absence figure for FY t-1",
        ("school_attendance", "school_register"),
        "child_absence_days_last_fy",
    ),
    (
        "miss_consultation_history",
        "相談履歴 不完全 [consultation history incomplete]",
        "Consultation history not observed since birth",
        ("consultations", "residents"),
        "cons_any_ever",
    ),
]


def missing_indicators(frame: pd.DataFrame | Mapping[str, pd.Series]) -> pd.DataFrame:
    """1 where the source column is NaN (see MISSING_INDICATORS); ``frame`` may be a dict of
    columns on one index."""
    return pd.DataFrame(
        {name: frame[source].isna().astype("float64") for name, *_, source in MISSING_INDICATORS}
    )


def feature_registry(cfg: Settings) -> list[FeatureSpec]:
    """Every column of the panel, in order. The catalogue and the panel come from this list."""
    wins = window_names(cfg.panel)
    out: list[FeatureSpec] = [
        _spec(
            "child_id",
            "児童ID（仮名）[child pseudonym]",
            "Resident pseudonym of the child",
            "residents",
            "as_of",
            "id",
            "id",
            "never_missing",
        ),
        _spec(
            "fiscal_year",
            "年度 [fiscal year]",
            "Fiscal year t; as-of date is its first day",
            (),
            "as_of",
            "id",
            "id",
            "never_missing",
        ),
        _spec(
            "household_id",
            "世帯ID（仮名）[household pseudonym]",
            "Household pseudonym on the as-of date (for grouped splits)",
            "household_history",
            "as_of",
            "category",
            "info",
            "nan_no_household",
        ),
        _spec(
            "age",
            "年齢 [age]",
            "Age in completed years on the as-of date",
            "residents",
            "as_of",
            "numeric",
            "info",
            "never_missing",
        ),
        _spec(
            "school_age",
            "学齢 [school age]",
            "Age by the 2 April-1 April school cohort",
            "residents",
            "as_of",
            "numeric",
            "info",
            "never_missing",
        ),
        _spec(
            "grade",
            "学年 [grade]",
            "Grade 1-9 implied by the cohort; NaN outside 1-9",
            "residents",
            "as_of",
            "numeric",
            "info",
            "nan_not_applicable",
        ),
        _spec(
            "school_code",
            "学校コード [school]",
            "School in the register for FY t (info only: routes the review list; not a feature)",
            "school_register",
            "fy_t",
            "category",
            "info",
            "nan_not_applicable",
        ),
        _spec(
            "school_district",
            "小学校区 [school district]",
            "District of the address",
            "residents",
            "as_of",
            "category",
            "info",
            "nan_unknown",
        ),
        _spec(
            "sex",
            "性別 [sex]",
            "Registered sex",
            "residents",
            "as_of",
            "category",
            "info",
            "never_missing",
        ),
        _spec(
            "nationality",
            "国籍 [nationality]",
            "japanese / foreign",
            "residents",
            "as_of",
            "category",
            "info",
            "never_missing",
        ),
        _spec(
            "single_parent",
            "ひとり親世帯 [single parent]",
            "Same as hh_single_parent (info)",
            "household_history",
            "as_of",
            "binary",
            "info",
            "nan_no_household",
        ),
        _spec(
            "history_incomplete",
            "履歴不完全（転入）[history incomplete]",
            "Moved in after birth: records before the move-in are not here",
            "residents",
            "as_of",
            "binary",
            "info",
            "never_missing",
        ),
        # --- child
        _spec(
            "child_age",
            "年齢 [age]",
            "Age in completed years on the as-of date",
            "residents",
            "as_of",
            "numeric",
            missing="never_missing",
        ),
        _spec(
            "child_school_age",
            "学齢 [school age]",
            "Age by the 2 April-1 April cohort (masked birth month; 1 April births are in March)",
            "residents",
            "as_of",
            "numeric",
            missing="never_missing",
        ),
        _spec(
            "child_is_female",
            "女児 [female]",
            "Sex registered as female",
            "residents",
            "as_of",
            "binary",
            missing="never_missing",
        ),
        _spec(
            "child_is_foreign",
            "外国籍 [foreign national]",
            "Child is a foreign national",
            "residents",
            "as_of",
            "binary",
            missing="never_missing",
        ),
        _spec(
            "history_incomplete_flag",
            "転入者（履歴不完全）[in-mover]",
            "1 if the child moved in after birth",
            "residents",
            "as_of",
            "binary",
            missing="never_missing",
        ),
        _spec(
            "months_since_move_in",
            "転入後月数 [months since move-in]",
            "Months between the move-in month and the as-of date",
            "residents",
            "as_of",
            "numeric",
            missing="nan_not_applicable",
        ),
        _spec(
            "birth_weight_g",
            "出生体重 [birth weight, g]",
            "Birth weight",
            "birth_status",
            "ever",
            "numeric",
        ),
        _spec(
            "birth_head_circumference_cm",
            "出生時頭囲 [head circumference, cm]",
            "Head circumference at birth",
            "birth_status",
            "ever",
            "numeric",
        ),
        _spec(
            "birth_gestational_weeks",
            "在胎週数 [gestational weeks]",
            "Weeks of gestation",
            "birth_status",
            "ever",
            "numeric",
        ),
        _spec(
            "birth_low_weight",
            "低出生体重（2500g未満）[low birth weight]",
            "Birth weight below 2,500 g",
            "birth_status",
            "ever",
            "binary",
        ),
        _spec(
            "birth_multiple",
            "多胎 [multiple birth]",
            "Twin or higher multiple birth",
            "birth_status",
            "ever",
            "binary",
        ),
    ]
    for code, label in _enum("health_checkups", "checkup_type"):
        t = ("health_checkups",)
        out += [
            _spec(
                f"chk_{code}_weight_kg",
                f"{label} 体重 [weight, kg]",
                f"Weight at the {code} checkup",
                t,
                "ever",
                "numeric",
            ),
            _spec(
                f"chk_{code}_height_cm",
                f"{label} 身長 [height, cm]",
                f"Height at the {code} checkup",
                t,
                "ever",
                "numeric",
            ),
            _spec(
                f"chk_{code}_q_cooperation",
                f"{label} 育児協力者あり [help with child rearing]",
                "Questionnaire: someone helps with child rearing",
                t,
                "ever",
                "binary",
            ),
            _spec(
                f"chk_{code}_q_difficulty",
                f"{label} 育てにくさ [hard to raise]",
                "Questionnaire: parent finds the child hard to raise",
                t,
                "ever",
                "binary",
            ),
            _spec(
                f"chk_{code}_q_mother_cigarettes",
                f"{label} 母の喫煙本数 [mother's cigarettes/day]",
                "Questionnaire: mother's cigarettes per day (0 = non-smoker)",
                t,
                "ever",
                "numeric",
            ),
            _spec(
                f"chk_{code}_result",
                f"{label} 判定 [result 0=normal..3=treat]",
                "Overall judgement, ordinal",
                t,
                "ever",
                "numeric",
            ),
            _spec(
                f"chk_{code}_missed",
                f"{label} 未受診 [missed]",
                "Not attended although resident at the due age and the due period has passed",
                ("health_checkups", "residents"),
                "ever",
                "binary",
                missing="nan_not_applicable",
            ),
        ]
    out += [
        _spec(
            "chk_missed_count",
            "乳幼児健診 未受診数 [checkups missed]",
            "Number of checkups missed (of those applicable)",
            ("health_checkups", "residents"),
            "ever",
            "count",
            missing="nan_not_applicable",
        ),
        _spec(
            "vacc_doses",
            "予防接種 接種回数 [vaccination doses]",
            "Doses recorded before as-of",
            "vaccinations",
            "ever",
            "count",
            missing="zero_if_observed",
        ),
        _spec(
            "child_handbook_physical",
            "身体障害者手帳 [physical handbook]",
            "Held on the as-of date",
            "disability_handbooks",
            "as_of",
            "binary",
            missing="never_missing",
        ),
        _spec(
            "child_handbook_mental",
            "精神障害者保健福祉手帳 [mental-health handbook]",
            "Held on the as-of date",
            "disability_handbooks",
            "as_of",
            "binary",
            missing="never_missing",
        ),
        _spec(
            "child_handbook_rehab",
            "療育手帳 [rehabilitation handbook]",
            "Held on the as-of date",
            "disability_handbooks",
            "as_of",
            "binary",
            missing="never_missing",
        ),
        _spec(
            "child_handbook_grade",
            "手帳等級（最重度）[most severe grade 1-6]",
            "Most severe grade of a physical/mental handbook held",
            "disability_handbooks",
            "as_of",
            "numeric",
            missing="nan_no_record",
        ),
        _spec(
            "child_rehab_severe",
            "療育手帳A（重度）[rehab grade A]",
            "療育手帳 grade A held",
            "disability_handbooks",
            "as_of",
            "binary",
            missing="never_missing",
        ),
        _spec(
            "child_indep_support_ever",
            "自立支援医療 受給歴（本人）[child, ever]",
            "The child ever had a 自立支援医療 certificate (any kind)",
            "independence_support",
            "ever",
            "binary",
            missing="zero_if_observed",
        ),
        _spec(
            "child_nursery_enrolled",
            "保育所等 在籍中 [in nursery now]",
            "Enrolled on the as-of date",
            "nursery_enrolment",
            "as_of",
            "binary",
            missing="never_missing",
        ),
        _spec(
            "child_nursery_ever",
            "保育所等 在籍歴 [nursery ever]",
            "Ever enrolled",
            "nursery_enrolment",
            "ever",
            "binary",
            missing="zero_if_observed",
        ),
        _spec(
            "child_special_needs_last_fy",
            "特別支援学級（前年度）[special-needs class, last FY]",
            "In a special-needs class in FY t-1 (blank = no); NaN if not in last year's register",
            "school_register",
            "1fy",
            "binary",
            missing="nan_not_applicable",
        ),
        _spec(
            "child_absence_days_last_fy",
            "欠席日数（前年度）[absence days, last FY]",
            "Absence days in FY t-1 (linked by student number)",
            ("school_attendance", "school_register"),
            "1fy",
            "count",
        ),
        _spec(
            "child_absence_30plus_last_fy",
            "欠席30日以上（前年度）[absent 30+ days]",
            "30 or more absence days in FY t-1",
            ("school_attendance", "school_register"),
            "1fy",
            "binary",
        ),
        _spec(
            "child_school_aid_last_fy",
            "就学援助（本人・前年度）[school aid]",
            "The child was approved for school aid for FY t-1",
            "school_aid",
            "1fy",
            "binary",
            missing="nan_not_applicable",
        ),
    ]
    for code, label in _enum("consultations", "consultation_type") + [("any", "相談（全種別）")]:
        for w in wins:
            out.append(
                _spec(
                    f"cons_{code}_{w}",
                    f"{label} 件数（{w}）[consultations, {w}]",
                    f"Consultations of type {code} received in the window {w}",
                    "consultations",
                    w,
                    "count",
                    missing="zero_if_observed",
                )
            )
        out.append(
            _spec(
                f"cons_{code}_months_since",
                f"{label} 最終相談からの月数 [months since last]",
                f"Months since the last {code} consultation",
                "consultations",
                "ever",
                "numeric",
                missing="nan_no_record",
            )
        )
    for w in wins:
        out.append(
            _spec(
                f"cons_yc_determined_{w}",
                f"ヤングケアラー判定 件数（{w}）[YC determined]",
                "Consultations with young_carer_determined true",
                "consultations",
                w,
                "count",
                missing="zero_if_observed",
            )
        )
        out.append(
            _spec(
                f"progress_poor_{w}",
                f"経過記録「悪い」件数（{w}）[poor assessments]",
                "Progress records assessed 悪い",
                "progress_records",
                w,
                "count",
                missing="zero_if_observed",
            )
        )
    out += linked_source_specs(wins)
    hh = ("household_history", "residents")
    out += [
        _spec(
            "hh_size",
            "世帯人数 [household size]",
            "Members on the as-of date, child included",
            hh,
            "as_of",
            "count",
            missing="nan_no_household",
        ),
        _spec(
            "hh_parent_count",
            "同居の親の数 [parents in household]",
            "Adults of the child's parent generation (from relationship to head)",
            hh,
            "as_of",
            "count",
            missing="nan_no_household",
        ),
        _spec(
            "hh_single_parent",
            "ひとり親世帯 [single parent]",
            "Exactly one adult of the parent generation in the household",
            hh,
            "as_of",
            "binary",
            missing="nan_no_household",
        ),
        _spec(
            "hh_members_75plus",
            "75歳以上の世帯員数 [members 75+]",
            "Other members aged 75+",
            hh,
            "as_of",
            "count",
            missing="nan_no_household",
        ),
        _spec(
            "hh_children_under6",
            "5歳以下の子の数（本人含む）[children aged 0-5]",
            "Members aged 0-5, the child included",
            hh,
            "as_of",
            "count",
            missing="nan_no_household",
        ),
        _spec(
            "hh_foreign_members",
            "外国籍の世帯員数 [foreign members]",
            "Other members of foreign nationality",
            hh,
            "as_of",
            "count",
            missing="nan_no_household",
        ),
        _spec(
            "hh_care_support_members",
            "要支援1-2の世帯員数 [members 要支援]",
            "Other members certified 要支援1-2",
            ("long_term_care", *hh),
            "as_of",
            "count",
            missing="nan_no_household",
        ),
        _spec(
            "hh_care_need_members",
            "要介護1-5の世帯員数 [members 要介護]",
            "Other members certified 要介護1-5",
            ("long_term_care", *hh),
            "as_of",
            "count",
            missing="nan_no_household",
        ),
        _spec(
            "hh_care_level_max",
            "世帯員の最重度の要介護度 [max care level 0-7]",
            "0 none, 1-2 要支援1-2, 3-7 要介護1-5 (other members)",
            ("long_term_care", *hh),
            "as_of",
            "numeric",
            missing="nan_no_household",
        ),
        _spec(
            "hh_disabled_members",
            "障害者手帳所持の世帯員数 [members with a handbook]",
            "Other members holding any disability handbook",
            ("disability_handbooks", *hh),
            "as_of",
            "count",
            missing="nan_no_household",
        ),
        _spec(
            "hh_public_assistance",
            "生活保護 [public assistance]",
            "Household on assistance",
            ("public_assistance", "household_history"),
            "as_of",
            "binary",
            missing="nan_no_household",
        ),
        _spec(
            "hh_public_assistance_3fy",
            "生活保護歴（過去3年度）[assistance in 3 FY]",
            "Household had assistance at some point in the last 3 fiscal years",
            ("public_assistance", "household_history"),
            "3fy",
            "binary",
            missing="nan_no_household",
        ),
        _spec(
            "hh_child_rearing_allowance",
            "児童扶養手当 [child-rearing allowance]",
            "A member receives 児童扶養手当",
            ("allowances", *hh),
            "as_of",
            "binary",
            missing="nan_no_household",
        ),
        _spec(
            "hh_special_child_allowance",
            "特別児童扶養手当 [special child allowance]",
            "A member receives 特別児童扶養手当",
            ("allowances", *hh),
            "as_of",
            "binary",
            missing="nan_no_household",
        ),
        _spec(
            "hh_single_parent_medical",
            "ひとり親家庭等医療 [single-parent medical aid]",
            "A member receives ひとり親家庭等医療",
            ("allowances", *hh),
            "as_of",
            "binary",
            missing="nan_no_household",
        ),
        _spec(
            "hh_school_aid",
            "就学援助（世帯）[school aid]",
            "Same as yc_school_aid, as count",
            ("school_aid", *hh),
            "1fy",
            "count",
            missing="nan_no_household",
        ),
        _spec(
            "hh_siblings_special_needs",
            "特別支援学級のきょうだい数 [siblings in special class]",
            "Other members in a special-needs class in FY t-1",
            ("school_register", *hh),
            "1fy",
            "count",
            missing="nan_no_household",
        ),
        # --- deltas vs the previous as-of date
        _spec(
            "delta_hh_size",
            "世帯人数の増減（前年度比）[household size change]",
            "hh_size minus hh_size one year earlier",
            hh,
            "delta",
            "numeric",
            missing="nan_not_applicable",
        ),
        _spec(
            "delta_new_public_assistance",
            "生活保護 新規開始 [newly on assistance]",
            "On assistance now, not one year earlier",
            ("public_assistance", *hh),
            "delta",
            "binary",
            missing="nan_not_applicable",
        ),
        _spec(
            "delta_became_single_parent",
            "ひとり親世帯に変化 [became single-parent]",
            "Single parent now, not one year earlier",
            hh,
            "delta",
            "binary",
            missing="nan_not_applicable",
        ),
        _spec(
            "delta_new_care_need",
            "要介護の世帯員が新たに発生 [care need started]",
            "A member certified 要介護1-5 now, none one year earlier",
            ("long_term_care", *hh),
            "delta",
            "binary",
            missing="nan_not_applicable",
        ),
        _spec(
            "delta_household_changed",
            "世帯の変更 [changed household]",
            "Household pseudonym differs from one year earlier",
            hh,
            "delta",
            "binary",
            missing="nan_not_applicable",
        ),
        _spec(
            "delta_moved_in_last_fy",
            "前年度中の転入 [moved in during last FY]",
            "Moved into the municipality in FY t-1",
            "residents",
            "delta",
            "binary",
            missing="never_missing",
        ),
    ]
    for name, label, desc, tables, source in MISSING_INDICATORS:
        out.append(
            _spec(
                name,
                label,
                desc + f" (1 when {source} is NaN)",
                tables,
                "as_of",
                "binary",
                missing="never_missing",
            )
        )
    for name, label, desc, tables in YC_ITEMS:
        out.append(
            _spec(
                name,
                f"YC項目: {label}",
                desc,
                tables,
                "as_of",
                "binary",
                missing="nan_no_household",
            )
        )
    out += [
        _spec(
            "yc_rule_score",
            "ヤングケアラー ルールスコア（12項目の合計）[YC rule score]",
            "Count of the 12 young-carer items that are 1 (no weights)",
            tuple(sorted({t for *_, ts in YC_ITEMS for t in ts})),
            "as_of",
            "count",
            missing="score_counts_known",
        ),
        _spec(
            "yc_items_unknown",
            "YC項目 不明数 [YC items unknown]",
            "Number of the 12 items that are unknown (NaN)",
            tuple(sorted({t for *_, ts in YC_ITEMS for t in ts})),
            "as_of",
            "count",
            missing="never_missing",
        ),
    ]
    for target in cfg.run.targets:
        out.append(
            _spec(
                f"label_{target}",
                f"目的変数: {target} [label]",
                f"{target} first recorded within the outcome window starting at the "
                "as-of date (incidence: 0 for rows already known)",
                "consultations",
                f"next_{cfg.panel.outcome_window_years}fy",
                "binary",
                "label",
                "nan_window_unobserved",
            )
        )
        out.append(
            _spec(
                f"known_{target}",
                f"既知: {target} [known before as-of]",
                f"{target} recorded before the as-of date",
                "consultations",
                "ever",
                "binary",
                "known",
                "never_missing",
            )
        )
    out.append(
        _spec(
            "known_case_conference",
            "要対協ケース登録済み [registered case]",
            "Registered with the regional council before the as-of date (post-outcome "
            "table: 'already known' only, never a feature)",
            "case_conference",
            "ever",
            "binary",
            "known",
            "never_missing",
        )
    )
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise MimamoriError("feature registry: duplicate column names")
    return out


def check_registry_roles(registry: list[FeatureSpec], schemas=None) -> None:
    """A table with role post_outcome may feed `known` columns only, never a feature."""
    schemas = schemas or load_schemas()
    post = {t for t, s in schemas.items() if s.role == "post_outcome"}
    for spec in registry:
        bad = post.intersection(spec.source_tables)
        if bad and spec.role != "known":
            raise MimamoriError(
                f"feature registry: {spec.name} (role {spec.role}) reads post-outcome table(s) "
                f"{sorted(bad)}; such tables may only mark children as already known"
            )


def feature_catalogue(cfg: Settings) -> pd.DataFrame:
    """The catalogue as a table (one row per panel column), generated from the registry."""
    registry = feature_registry(cfg)
    check_registry_roles(registry)
    rows = []
    for spec in registry:
        row = asdict(spec)
        row["source_tables"] = ";".join(spec.source_tables)
        rows.append(row)
    return pd.DataFrame(rows)[list(CATALOGUE_COLUMNS)]


# ---------------------------------------------------------------------------------------------
# Date helpers (all dates in the mart are the first day of a month)
# ---------------------------------------------------------------------------------------------


def _ymd(dates: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month and day of each date as float64 arrays (NaN where the date is missing),
    by integer arithmetic on datetime64 (much faster than the ``.dt`` accessors)."""
    d = dates if pd.api.types.is_datetime64_any_dtype(dates) else pd.to_datetime(dates)
    v = d.to_numpy(dtype="datetime64[ns]")
    nat = np.isnat(v)
    months = v.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype("int64") + 1970
    month = months.astype("int64") % 12 + 1
    day = (v - months).astype("timedelta64[D]").astype("int64") + 1
    out = []
    for part in (year, month, day):
        f = part.astype("float64")
        f[nat] = np.nan
        out.append(f)
    return out[0], out[1], out[2]


def months_between(earlier: pd.Series, later: pd.Timestamp) -> pd.Series:
    """Whole months from each (month-masked) date to ``later``; NaN where the date is missing."""
    year, month, _ = _ymd(earlier)
    out = (later.year - year) * 12 + (later.month - month)
    return pd.Series(out, index=earlier.index, name=earlier.name)


def age_on(birth: pd.Series, on: pd.Timestamp) -> pd.Series:
    """Completed years on ``on`` from a masked birth date.

    A masked date YYYY-MM-01 stands for some day of that month; 1 April births were moved to
    1 March. So with ``on`` = 1 April, a masked April birth (2-30 April) has not had its
    birthday yet, and a masked March birth (incl. 1 April) has.
    """
    year, month, day = _ymd(birth)
    before = (month > on.month) | ((month == on.month) & (day >= on.day))
    out = on.year - year - before
    return pd.Series(out, index=birth.index, name=birth.name)


def school_age_on(birth: pd.Series, fiscal_year: int) -> pd.Series:
    """Age by the 2 April-1 April school cohort (学齢) in fiscal year ``fiscal_year``.

    Cohort Y = born 2 April Y .. 1 April Y+1. With month-masked birth dates, a date from
    YYYY-04-01 onwards belongs to cohort YYYY and January-March (incl. 1 April births, masked
    to March) to cohort YYYY-1. Grade 1 in FY t is school age 6 (cohort t-7).
    """
    year, month, _ = _ymd(birth)
    cohort = year - (month < 4)
    return pd.Series(fiscal_year - cohort - 1, index=birth.index, name=birth.name)


def active_at(df: pd.DataFrame, start: str, end: str | None, on: pd.Timestamp) -> pd.Series:
    """Rows whose period covers ``on``: started strictly before it and not ended before it.

    A masked start in the as-of month may be on or after the as-of day, so it does not count;
    a masked end in the as-of month may be after it, so the period is still open.
    """
    ok = df[start].notna() & (df[start] < on)
    if end is not None:
        ok &= df[end].isna() | (df[end] >= on)
    return ok.fillna(False).astype(bool)


def _flag(values: pd.Series) -> pd.Series:
    return values.astype("float64")


def _int_codes(keys: pd.Series | pd.Index) -> np.ndarray | None:
    """Key codes as int64 with -1 for a missing key, or None when the keys are not codes
    (pseudonym strings: a mart that ``encode_keys`` did not encode)."""
    if not pd.api.types.is_integer_dtype(keys.dtype):
        return None
    return keys.to_numpy(dtype="int64", na_value=-1)


def codes_in(keys: pd.Series, idx: pd.Index) -> np.ndarray:
    """``keys.isin(idx)`` as a numpy mask (a missing key is not in): by a lookup table on
    integer key codes, a hash join otherwise."""
    k, i = _int_codes(keys), _int_codes(idx)
    if k is None or i is None or (len(i) and i.min() < 0):
        return keys.isin(idx).fillna(False).to_numpy(dtype=bool)
    size = int(max(k.max(initial=-1), i.max(initial=-1))) + 1
    table = np.zeros(size + 1, dtype=bool)  # the last slot answers for -1 (missing)
    table[i] = True
    return table[k]


def count_per_child(idx: pd.Index, keys: pd.Series, mask: pd.Series) -> pd.Series:
    """Rows per child of ``idx`` among the rows where ``mask`` holds (0 where none): the
    same numbers as ``keys[mask]`` grouped and counted, by ``np.bincount`` on key codes."""
    k, i = _int_codes(keys), _int_codes(idx)
    m = mask.fillna(False).to_numpy(dtype=bool) if mask.dtype != bool else mask.to_numpy()
    if k is None or i is None or (len(i) and i.min() < 0):
        counts = keys[m].groupby(keys[m]).size()
        return _per_child(idx, counts, 0.0).astype("float64")
    size = int(max(k.max(initial=-1), i.max(initial=-1))) + 1
    per = np.bincount(k[m & (k >= 0)], minlength=size)
    return pd.Series(per[i].astype("float64"), index=idx)


def _per_child(index: pd.Index, values: pd.Series, fill: float | None = None) -> pd.Series:
    out = values.reindex(index)
    return out.fillna(fill) if fill is not None else out


# ---------------------------------------------------------------------------------------------
# Child features
# ---------------------------------------------------------------------------------------------

CHECKUP_RESULT_ORDER = {"normal": 0.0, "observe": 1.0, "refer": 2.0, "treat": 3.0}
CARE_LEVEL_ORDER = {
    "support_1": 1,
    "support_2": 2,
    "care_1": 3,
    "care_2": 4,
    "care_3": 5,
    "care_4": 6,
    "care_5": 7,
}


def coverage_start(df: pd.DataFrame, date_col: str, on: pd.Timestamp) -> pd.Timestamp:
    """First month the source system holds records for, as far as visible before ``on``.

    Exports cover a period (the consultation system may start in 2017); a window reaching
    before it was not observed. Only records before ``on`` are looked at, so the answer
    cannot leak: with nothing recorded yet, coverage starts at ``on``.
    """
    dates = df.loc[df[date_col] < on, date_col]
    return dates.min() if len(dates) else on


def first_covered_year(df: pd.DataFrame, fiscal_year: int) -> int:
    """Earliest fiscal year a yearly table (register, aid, attendance) holds before year t."""
    years = df.loc[df["fiscal_year"] < fiscal_year, "fiscal_year"]
    return int(years.min()) if len(years) else fiscal_year


def observed_since(
    spine: pd.DataFrame, window_start: pd.Timestamp | None, covered_from: pd.Timestamp | None = None
) -> pd.Series:
    """True where the records cover the window for the child.

    The window starts at ``window_start`` or, for "ever", at birth (later of the two). It is
    observed when the child was here from its start (born here, or moved in by then) and
    the source table's coverage began by then.
    """
    birth = spine["birth_date"]
    start = birth if window_start is None else birth.where(birth > window_start, window_start)
    ok = spine["move_in_date"].isna() | (spine["move_in_date"] <= start)
    if covered_from is not None:
        ok &= covered_from <= start
    return ok.fillna(False).astype(bool)


def zero_if_observed(counts: pd.Series, observed: pd.Series) -> pd.Series:
    """Keep positives; a zero only where the window was fully observed, else NaN."""
    counts = counts.astype("float64")
    return counts.where((counts > 0) | observed, np.nan)


def _covered_from(
    coverage: Coverage | None,
    tables: dict[str, pd.DataFrame],
    table: str,
    date_col: str,
    on: pd.Timestamp,
) -> pd.Timestamp:
    """First day a source covers as seen on ``on``: the export's span (``coverage``), or
    without one the earliest record before ``on``."""
    if coverage is not None:
        return coverage.covered_from(table, on)
    return coverage_start(tables[table], date_col, on)


def _first_year(
    coverage: Coverage | None, tables: dict[str, pd.DataFrame], table: str, fiscal_year: int
) -> int:
    if coverage is not None:
        return coverage.first_fiscal_year(table, fiscal_year)
    return first_covered_year(tables[table], fiscal_year)


def child_features(
    spine: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    on: pd.Timestamp,
    fiscal_year: int,
    panel_cfg: PanelSettings,
    coverage: Coverage | None = None,
) -> pd.DataFrame:
    """Features of the child itself. ``spine`` is indexed by child_id with residents' columns;
    ``coverage`` says which windows each source export observed (see helpers.panel.coverage)."""
    idx = spine.index
    out: dict[str, pd.Series] = {}
    out["child_age"] = age_on(spine["birth_date"], on)
    out["child_school_age"] = school_age_on(spine["birth_date"], fiscal_year)
    out["child_is_female"] = _flag(spine["sex"] == "female")
    out["child_is_foreign"] = _flag(spine["nationality"] == "foreign")
    incomplete = spine["move_in_date"].notna()
    out["history_incomplete_flag"] = _flag(incomplete)
    out["months_since_move_in"] = months_between(spine["move_in_date"], on)

    def ever_observed(table: str, date_col: str) -> pd.Series:
        return observed_since(spine, None, _covered_from(coverage, tables, table, date_col, on))

    birth = tables["birth_status"].drop_duplicates("resident_code").set_index("resident_code")
    birth = birth.reindex(idx)
    out["birth_weight_g"] = birth["birth_weight_g"].astype("float64")
    out["birth_head_circumference_cm"] = birth["head_circumference_cm"].astype("float64")
    out["birth_gestational_weeks"] = birth["gestational_weeks"].astype("float64")
    out["birth_low_weight"] = (
        (out["birth_weight_g"] < 2500).astype("float64").where(out["birth_weight_g"].notna())
    )
    out["birth_multiple"] = birth["multiple_birth"].astype("float64")

    out.update(checkup_features(spine, tables, on, panel_cfg, coverage))

    vac = tables["vaccinations"]  # the largest table (8M rows at L): count without copying
    doses = count_per_child(idx, vac["resident_code"], vac["vaccination_date"] < on)
    out["vacc_doses"] = zero_if_observed(doses, ever_observed("vaccinations", "vaccination_date"))

    hb = tables["disability_handbooks"]
    hb = hb[hb["resident_code"].isin(idx) & active_at(hb, "issue_date", "end_date", on)]
    for kind in ("physical", "mental", "rehab"):
        has = hb.loc[hb["handbook_type"] == kind, "resident_code"].unique()
        out[f"child_handbook_{kind}"] = _flag(pd.Series(idx.isin(has), index=idx))
    graded = hb[hb["handbook_type"].isin(["physical", "mental"])].copy()
    graded["g"] = pd.to_numeric(graded["grade"], errors="coerce")
    out["child_handbook_grade"] = _per_child(idx, graded.groupby("resident_code")["g"].min())
    severe = hb.loc[(hb["handbook_type"] == "rehab") & (hb["grade"] == "A"), "resident_code"]
    out["child_rehab_severe"] = _flag(pd.Series(idx.isin(severe.unique()), index=idx))

    ind = tables["independence_support"]
    ever_ind = ind.loc[ind["start_date"] < on, "resident_code"].unique()
    out["child_indep_support_ever"] = zero_if_observed(
        pd.Series(idx.isin(ever_ind), index=idx),
        ever_observed("independence_support", "start_date"),
    )

    nur = tables["nursery_enrolment"]
    nur_now = nur.loc[active_at(nur, "start_date", "end_date", on), "resident_code"].unique()
    nur_ever = nur.loc[nur["start_date"] < on, "resident_code"].unique()
    out["child_nursery_enrolled"] = _flag(pd.Series(idx.isin(nur_now), index=idx))
    out["child_nursery_ever"] = zero_if_observed(
        pd.Series(idx.isin(nur_ever), index=idx), ever_observed("nursery_enrolment", "start_date")
    )

    reg = tables["school_register"]
    reg_last = reg[reg["fiscal_year"] == fiscal_year - 1].drop_duplicates("resident_code")
    reg_last = reg_last.set_index("resident_code").reindex(idx)
    in_reg = reg_last["student_id"].notna()
    # special_needs_class: schema `missing: none` (blank = no) for a child in the register.
    out["child_special_needs_last_fy"] = (
        reg_last["special_needs_class"]
        .astype("boolean")
        .fillna(False)
        .astype("float64")
        .where(in_reg)
    )
    absence = absence_last_fy(tables, idx, fiscal_year)
    out["child_absence_days_last_fy"] = absence
    out["child_absence_30plus_last_fy"] = (absence >= 30).astype("float64").where(absence.notna())
    aid = tables["school_aid"]
    aid_last = aid[(aid["fiscal_year"] == fiscal_year - 1) & (aid["approved_date"] < on)]
    aid_ids = aid_last["resident_code"].unique()
    aid_covered = _first_year(coverage, tables, "school_aid", fiscal_year) <= fiscal_year - 1
    out["child_school_aid_last_fy"] = (
        pd.Series(idx.isin(aid_ids), index=idx)
        .astype("float64")
        .where((in_reg | idx.isin(aid_ids)) & aid_covered)
    )
    # one frame from all columns (all on ``idx``): no wide copy per join
    for part in (
        consultation_features(spine, tables, on, panel_cfg, coverage),
        linked_source_features(spine, tables, on, fiscal_year, panel_cfg, coverage),
    ):
        out.update({c: part[c] for c in part.columns})
    return pd.DataFrame(out, index=idx, copy=False)  # no consolidation copy


def checkup_features(
    spine: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    on: pd.Timestamp,
    panel_cfg: PanelSettings,
    coverage: Coverage | None = None,
) -> dict[str, pd.Series]:
    """Measurements, questionnaire and result of each infant checkup attended before ``on``,
    and whether it was missed: due and overdue while the child lived here and the checkup
    export covers the due date (an export that starts later cannot show attendance)."""
    idx = spine.index
    out: dict[str, pd.Series] = {}
    chk = tables["health_checkups"]
    chk = chk[codes_in(chk["resident_code"], idx) & (chk["checkup_date"] < on).to_numpy(bool)]
    chk = chk.sort_values("checkup_date", kind="stable").drop_duplicates(
        ["resident_code", "checkup_type"], keep="last"
    )
    # each child's row of each type, placed by position (no reindex of the whole frame)
    pos = idx.get_indexer(chk["resident_code"])
    kinds = chk["checkup_type"].to_numpy(dtype=object, na_value=None)
    values = {
        "weight_kg": chk["weight_kg"],
        "height_cm": chk["height_cm"],
        "q_cooperation": chk["q_cooperation"],
        "q_difficulty": chk["q_difficulty"],
        "q_mother_cigarettes": chk["q_mother_cigarettes"],
        "result": chk["result"].map(CHECKUP_RESULT_ORDER),
    }
    arrays = {k: v.to_numpy(dtype="float64", na_value=np.nan) for k, v in values.items()}
    due_cfg = panel_cfg.checkup_due_months
    covered = _covered_from(coverage, tables, "health_checkups", "checkup_date", on)
    missed_all = []
    for code, _label in _enum("health_checkups", "checkup_type"):
        of_code = kinds == code
        at = pos[of_code]
        for field, arr in arrays.items():
            col = np.full(len(idx), np.nan)
            col[at] = arr[of_code]
            out[f"chk_{code}_{field}"] = pd.Series(col, index=idx)
        attended = np.zeros(len(idx), dtype=bool)
        attended[at] = True
        if code not in due_cfg:
            raise MimamoriError(f"config/panel.yaml: checkup_due_months has no entry for {code!r}")
        due_m, grace_m = due_cfg[code]
        due = spine["birth_date"] + pd.DateOffset(months=int(due_m))
        overdue = (spine["birth_date"] + pd.DateOffset(months=int(due_m) + int(grace_m))) < on
        resident_at_due = spine["move_in_date"].isna() | (spine["move_in_date"] <= due)
        # the export must cover the due date: one that starts later cannot show attendance
        due_now = (overdue & resident_at_due & (due >= covered)).to_numpy(dtype=bool)
        missed = np.where(attended, 0.0, np.where(due_now, 1.0, np.nan))
        out[f"chk_{code}_missed"] = pd.Series(missed, index=idx)
        missed_all.append(missed)
    stacked = np.column_stack(missed_all)
    count = np.where(np.isnan(stacked), 0.0, stacked).sum(axis=1)
    out["chk_missed_count"] = pd.Series(
        np.where(np.isnan(stacked).all(axis=1), np.nan, count), index=idx
    )
    return out


def absence_last_fy(tables: dict[str, pd.DataFrame], idx: pd.Index, fiscal_year: int) -> pd.Series:
    """Absence days in FY t-1, linked via student_id to the register (resident_code is often
    blank in the school-affairs export); a resident_code present in attendance is used too."""
    att = tables["school_attendance"]
    att = att[att["fiscal_year"] == fiscal_year - 1]
    # link only through register rows of earlier years: a later row is future knowledge
    reg = tables["school_register"]
    reg = reg.loc[reg["fiscal_year"] < fiscal_year, ["student_id", "resident_code"]]
    reg = reg.dropna().drop_duplicates("student_id")
    linked = att.merge(reg, on="student_id", how="left", suffixes=("_att", ""))
    linked["resident_code"] = linked["resident_code"].fillna(linked["resident_code_att"])
    linked = linked.dropna(subset=["resident_code"])
    days = linked.groupby("resident_code")["absence_days"].max().astype("float64")
    return _per_child(idx, days)


def consultation_features(
    spine: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    on: pd.Timestamp,
    panel_cfg: PanelSettings,
    coverage: Coverage | None = None,
) -> pd.DataFrame:
    """Counts per consultation type and window, months since last, poor progress records."""
    idx = spine.index
    out: dict[str, pd.Series] = {}
    cons = tables["consultations"]
    cons = cons[cons["resident_code"].isin(idx) & (cons["received_date"] < on)]
    prog = tables["progress_records"]
    prog = prog[prog["resident_code"].isin(idx) & (prog["record_date"] < on)]
    prog = prog[prog["assessment"] == "poor"]
    windows = [(f"{int(w)}fy", on - pd.DateOffset(years=int(w))) for w in panel_cfg.windows]
    windows.append(("ever", None))
    types = [c for c, _ in _enum("consultations", "consultation_type")] + ["any"]
    cons_from = _covered_from(coverage, tables, "consultations", "received_date", on)
    prog_from = _covered_from(coverage, tables, "progress_records", "record_date", on)
    for wname, start in windows:
        observed = observed_since(spine, start, cons_from)
        c = cons if start is None else cons[cons["received_date"] >= start]
        counts = c.groupby(["resident_code", "consultation_type"]).size().unstack(fill_value=0)
        counts = counts.reindex(index=idx, columns=types[:-1], fill_value=0)
        counts["any"] = counts.sum(axis=1)
        for code in types:
            out[f"cons_{code}_{wname}"] = zero_if_observed(counts[code], observed)
        yc = c[c["young_carer_determined"].astype("boolean").fillna(False).astype(bool)]
        out[f"cons_yc_determined_{wname}"] = zero_if_observed(
            _per_child(idx, yc.groupby("resident_code").size(), 0.0), observed
        )
        p = prog if start is None else prog[prog["record_date"] >= start]
        out[f"progress_poor_{wname}"] = zero_if_observed(
            _per_child(idx, p.groupby("resident_code").size(), 0.0),
            observed_since(spine, start, prog_from),
        )
    last = cons.groupby(["resident_code", "consultation_type"])["received_date"].max().unstack()
    last = last.reindex(index=idx, columns=types[:-1])
    last["any"] = cons.groupby("resident_code")["received_date"].max().reindex(idx)
    for code in types:
        out[f"cons_{code}_months_since"] = months_between(last[code], on)
    # keep the registry's column order
    ordered = []
    for code in types:
        ordered += [f"cons_{code}_{w}" for w, _ in windows] + [f"cons_{code}_months_since"]
    for w, _ in windows:
        ordered += [f"cons_yc_determined_{w}", f"progress_poor_{w}"]
    return pd.DataFrame({c: out[c] for c in ordered}, index=idx, copy=False)


# ---------------------------------------------------------------------------------------------
# Code-less sources linked by 名寄せ (helpers.link): 校務支援 school_guidance, learning_support
# ---------------------------------------------------------------------------------------------

SG_MEASURES = (
    ("sg_nurse_visits", "nurse_visits", "保健室来室回数", "nurse's-office visits"),
    ("sg_guidance", "guidance_count", "生徒指導件数", "guidance cases"),
)
LINKED_SOURCES = ("school_guidance", "learning_support")


def linked_source_specs(wins: list[str]) -> list[FeatureSpec]:
    """Registry entries of the features from the code-less sources (see nan_unlinked)."""
    out = []
    for name, _field, label, what in SG_MEASURES:
        for w in wins:
            out.append(
                _spec(
                    f"{name}_{w}",
                    f"{label}（{w}）[{what}, {w}]",
                    f"{what.capitalize()} in the fiscal years of window {w} before the as-of date "
                    "(校務支援, linked by 名寄せ; a year's duplicate records count once); NaN when a "
                    "year the child is in the school register has no linked record or an unmatched "
                    "record names the child, or when the child was in no school in the window",
                    ("school_guidance", "school_register"),
                    w,
                    "count",
                    missing="nan_unlinked",
                )
            )
    ls = ("learning_support",)
    out.append(
        _spec(
            "ls_enrolled",
            "学習・生活支援事業 参加中 [learning support now]",
            "Taking part in the learning and living support programme on the as-of "
            "date (NPO roster, linked by 名寄せ)",
            ls,
            "as_of",
            "binary",
            missing="nan_unlinked",
        )
    )
    for w in wins:
        out.append(
            _spec(
                f"ls_{w}",
                f"学習・生活支援事業 参加（{w}）[learning support, {w}]",
                f"Took part in the programme at some time in the window {w}",
                ls,
                w,
                "binary",
                missing="nan_unlinked",
            )
        )
    return out


def _fy_windows(panel_cfg: PanelSettings, fiscal_year: int) -> list[tuple[str, int | None]]:
    """Window name and its first fiscal year (None = ever)."""
    return [(f"{int(w)}fy", fiscal_year - int(w)) for w in panel_cfg.windows] + [("ever", None)]


def school_guidance_features(
    spine: pd.DataFrame, tables: dict[str, pd.DataFrame], fiscal_year: int, panel_cfg: PanelSettings
) -> pd.DataFrame:
    """Nurse visits and guidance cases per window, summed over fiscal years before t.

    Each (child, fiscal year) is known from the child's linked records (the maximum over a
    year's duplicates), unknown when the child is in that year's school register without a
    linked record (unmatched, or a school or year the export does not cover) or an unmatched
    record of that year names the child as its candidate, and not applicable otherwise. A
    window is NaN when any of its years is unknown or none applies.
    """
    idx = spine.index
    sg = tables["school_guidance"]
    sg = sg[sg["fiscal_year"] < fiscal_year]
    fields = [f for _n, f, *_ in SG_MEASURES]
    linked = sg[sg["resident_code"].notna()]
    known = linked.groupby(["resident_code", "fiscal_year"])[fields].max()
    cand = sg.loc[
        sg["resident_code"].isna() & sg["candidate_code"].notna(), ["candidate_code", "fiscal_year"]
    ].rename(columns={"candidate_code": "resident_code"})
    reg = tables["school_register"]
    reg = reg.loc[
        reg["resident_code"].notna() & (reg["fiscal_year"] < fiscal_year),
        ["resident_code", "fiscal_year"],
    ]
    keys = pd.concat([reg, cand, known.index.to_frame(index=False)], ignore_index=True)
    keys = keys[keys["resident_code"].isin(idx)].drop_duplicates()
    years = keys.set_index(["resident_code", "fiscal_year"]).index
    values = known.reindex(years)
    flagged = (
        years.isin(pd.MultiIndex.from_frame(cand))
        if len(cand)
        else np.zeros(len(years), dtype=bool)
    )
    values[flagged] = np.nan
    values = values.reset_index()
    out: dict[str, pd.Series] = {}
    for wname, first in _fy_windows(panel_cfg, fiscal_year):
        v = values if first is None else values[values["fiscal_year"] >= first]
        g = v.groupby("resident_code")
        for name, field, *_ in SG_MEASURES:
            unknown = v[field].isna().groupby(v["resident_code"]).sum()
            total = g[field].sum().where(unknown == 0)
            out[f"{name}_{wname}"] = _per_child(idx, total)
    return pd.DataFrame(out, index=idx)


def _overlaps(df: pd.DataFrame, start: pd.Timestamp | None) -> pd.Series:
    """Periods (already started before the as-of date) not ended before ``start``."""
    if start is None:
        return pd.Series(True, index=df.index)
    return (df["end_date"].isna() | (df["end_date"] >= start)).astype(bool)


def learning_support_features(
    spine: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    on: pd.Timestamp,
    panel_cfg: PanelSettings,
    coverage: Coverage | None = None,
) -> pd.DataFrame:
    """Taking part now / in each window: 1 from a linked record, NaN (unless 1) when an
    unmatched record of the period names the child as its candidate, 0 only when the roster
    covers the window for the child (``observed_since``)."""
    idx = spine.index
    ls = tables["learning_support"]
    ls = ls[ls["start_date"] < on]
    linked, cand = ls[ls["resident_code"].notna()], ls[ls["resident_code"].isna()]
    covered = _covered_from(coverage, tables, "learning_support", "start_date", on)

    def value(mask_l: pd.Series, mask_c: pd.Series, observed: pd.Series) -> pd.Series:
        yes = pd.Series(idx.isin(linked.loc[mask_l, "resident_code"].unique()), index=idx)
        maybe = pd.Series(idx.isin(cand.loc[mask_c, "candidate_code"].dropna().unique()), index=idx)
        return zero_if_observed(yes, observed & ~maybe)

    now_seen = pd.Series(covered < on, index=idx)
    out = {
        "ls_enrolled": value(
            active_at(linked, "start_date", "end_date", on),
            active_at(cand, "start_date", "end_date", on),
            now_seen,
        )
    }
    for wname, first in _fy_windows(panel_cfg, on.year):
        start = None if first is None else on - pd.DateOffset(years=on.year - first)
        out[f"ls_{wname}"] = value(
            _overlaps(linked, start), _overlaps(cand, start), observed_since(spine, start, covered)
        )
    return pd.DataFrame(out, index=idx)


def linked_source_features(
    spine: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    on: pd.Timestamp,
    fiscal_year: int,
    panel_cfg: PanelSettings,
    coverage: Coverage | None = None,
) -> pd.DataFrame:
    """Every feature from the code-less sources, in registry order (NaN from a source that is
    not in ``tables``: an absent export)."""
    names = [s.name for s in linked_source_specs(window_names(panel_cfg))]
    out = pd.DataFrame(np.nan, index=spine.index, columns=names)
    if "school_guidance" in tables and "school_register" in tables:
        sg = school_guidance_features(spine, tables, fiscal_year, panel_cfg)
        out[sg.columns] = sg
    if "learning_support" in tables:
        ls = learning_support_features(spine, tables, on, panel_cfg, coverage)
        out[ls.columns] = ls
    return out


# ---------------------------------------------------------------------------------------------
# Household state on a date
# ---------------------------------------------------------------------------------------------


def resident_on(residents: pd.DataFrame, on: pd.Timestamp) -> pd.Series:
    """Registered in the municipality on ``on`` (born, moved in, not left, not died before)."""
    r = residents
    ok = (r["birth_date"] < on) & (r["move_in_date"].isna() | (r["move_in_date"] < on))
    ok &= r["move_out_date"].isna() | (r["move_out_date"] >= on)
    ok &= r["death_date"].isna() | (r["death_date"] >= on)
    return ok.fillna(False).astype(bool)


def _latest_span(hh: pd.DataFrame) -> pd.DataFrame:
    """Each person's open span with the latest start (the later row on a tie), in order of
    (resident_code, start_date): ``sort_values([...]).drop_duplicates(keep="last")`` by one
    stable ``np.lexsort`` on the integer keys (pandas factorizes both keys first)."""
    code = hh["resident_code"]
    if not pd.api.types.is_integer_dtype(code.dtype):  # pseudonyms, not key codes
        return hh.sort_values(["resident_code", "start_date"]).drop_duplicates(
            "resident_code", keep="last"
        )
    last = np.iinfo("int64").max  # a missing code sorts last, as in sort_values
    keys = code.to_numpy(dtype="int64", na_value=last)
    start = hh["start_date"].to_numpy(dtype="datetime64[ns]").view("int64")
    order = np.lexsort((start, keys))
    ordered = keys[order]
    keep = np.ones(len(order), dtype=bool)
    keep[:-1] = ordered[:-1] != ordered[1:]
    return hh.take(order[keep])


def _members(tables: dict[str, pd.DataFrame], on: pd.Timestamp, persons: pd.Index) -> pd.DataFrame:
    """Members on ``on`` of the households of ``persons``, with their residents' attributes.

    A member whose resident row is missing (rejected at ingest, or never exported) stays a
    member; their age and nationality are unknown (NaN), never guessed.
    """
    hh = tables["household_history"]
    hh = _latest_span(hh[active_at(hh, "start_date", "end_date", on)])
    res = tables["residents"].drop_duplicates("resident_code").set_index("resident_code")
    gone = ~resident_on(res, on) & (res["birth_date"] < on)
    hh = hh[~codes_in(hh["resident_code"], res.index[gone.to_numpy(dtype=bool)])]
    wanted = pd.Index(hh.loc[codes_in(hh["resident_code"], persons), "household_code"].unique())
    m = hh[codes_in(hh["household_code"], wanted)][
        ["resident_code", "household_code", "relationship"]
    ].copy()
    info = res[["birth_date", "nationality"]].reindex(m["resident_code"])
    age = age_on(info["birth_date"], on).to_numpy()
    known = ~np.isnan(age)
    m["age"] = age
    for col, flag in (("adult", age >= 18), ("age75", age >= 75), ("under6", age <= 5)):
        m[col] = np.where(known, flag.astype("float64"), np.nan)
    foreign = info["nationality"].astype("string").eq("foreign").astype("Float64")
    m["foreign"] = foreign.to_numpy(dtype="float64", na_value=np.nan)
    return m


def _member_records(
    m: pd.DataFrame, tables: dict[str, pd.DataFrame], on: pd.Timestamp, fiscal_year: int
) -> pd.DataFrame:
    """What each member holds on ``on``: care level, handbooks, 自立支援医療, allowances, school
    aid, special-needs class, and the parent-generation adults by relationship to the head."""
    codes = m["resident_code"]

    def holders(df: pd.DataFrame, mask: pd.Series) -> pd.Series:
        return codes.isin(df.loc[mask, "resident_code"].unique()).astype("float64")

    ltc = tables["long_term_care"]
    ltc = ltc[active_at(ltc, "certified_date", "loss_date", on)]
    level = (
        ltc["care_level"]
        .map(CARE_LEVEL_ORDER)
        .astype("float64")
        .groupby(ltc["resident_code"])
        .max()
    )
    m["care_level"] = level.reindex(codes).fillna(0.0).to_numpy()  # no certification = level 0
    m["care_support"] = ((m["care_level"] >= 1) & (m["care_level"] <= 2)).astype("float64")
    m["care_need"] = (m["care_level"] >= 3).astype("float64")
    hb = tables["disability_handbooks"]
    hb_act = active_at(hb, "issue_date", "end_date", on)
    m["handbook_any"] = holders(hb, hb_act)
    m["handbook_pm"] = holders(hb, hb_act & hb["handbook_type"].isin(["physical", "mental"]))
    ind = tables["independence_support"]
    mental = ind["kind"] == "mental_outpatient"
    m["indep_active"] = holders(ind, mental & active_at(ind, "start_date", "end_date", on))
    m["indep_ever"] = holders(ind, mental & (ind["start_date"] < on))
    al = tables["allowances"]
    al_act = active_at(al, "start_date", "end_date", on)
    m["child_rearing"] = holders(al, al_act & (al["allowance_type"] == "child_rearing"))
    m["special_child"] = holders(al, al_act & (al["allowance_type"] == "special_child_rearing"))
    m["sp_medical"] = holders(al, al_act & (al["allowance_type"] == "single_parent_medical"))
    aid = tables["school_aid"]
    m["school_aid"] = holders(
        aid, (aid["approved_date"] < on) & aid["fiscal_year"].between(fiscal_year - 1, fiscal_year)
    )
    reg = tables["school_register"]
    snc = reg["special_needs_class"].astype("boolean").fillna(False).astype(bool)
    m["special_needs"] = holders(reg, (reg["fiscal_year"] == fiscal_year - 1) & snc)
    for group, rels in PARENT_GROUPS.items():
        in_group = m["relationship"].isin(rels).to_numpy()
        m[f"adult_{group}"] = np.where(in_group, m["adult"].to_numpy(), 0.0)  # NaN if age unknown
    return m


# the adults of the child's parent generation, by the child's relationship to the head
PARENT_GROUPS = {
    "head_spouse": ("head", "spouse"),
    "child": ("child", "child_in_law"),
    "parent": ("parent", "parent_in_law"),
}
PARENT_OF = {"child": "adult_head_spouse", "grandchild": "adult_child", "sibling": "adult_parent"}
SUM_COLS = [
    "adult",
    "age75",
    "under6",
    "foreign",
    "care_support",
    "care_need",
    "handbook_any",
    "handbook_pm",
    "indep_active",
    "indep_ever",
    "child_rearing",
    "special_child",
    "sp_medical",
    "school_aid",
    "special_needs",
    "adult_head_spouse",
    "adult_child",
    "adult_parent",
]


def _count(total: pd.Series, unknown: pd.Series) -> pd.Series:
    """A count over members: NaN when any member it would count is unknown."""
    return total.astype("float64").where(unknown == 0)


def _any(total: pd.Series, unknown: pd.Series) -> pd.Series:
    """1 if a known member has it, 0 if none has and none is unknown, else NaN."""
    return (total > 0).astype("float64").where((total > 0) | (unknown == 0))


def _care_max_other(m: pd.DataFrame, me: pd.DataFrame) -> np.ndarray:
    """Care level of the other members: the household's highest level, or its second highest
    when the person holds the highest themself."""
    lvl = m[["household_code", "care_level"]].sort_values(
        ["household_code", "care_level"], ascending=[True, False]
    )
    rank = lvl.groupby("household_code").cumcount()
    first = lvl[rank == 0].set_index("household_code")["care_level"]
    second = lvl[rank == 1].set_index("household_code")["care_level"]
    hh_first = first.reindex(me["household_code"]).to_numpy()
    hh_second = second.reindex(me["household_code"]).fillna(0).to_numpy()
    own = me["care_level"].to_numpy()
    return np.where(own >= hh_first, hh_second, hh_first).astype("float64")


def _household_sums(m: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per household (sorted codes, as a group-by would give): the sum of each SUM_COLS item
    over its known members plus ``size``, and the count of members for whom it is unknown.

    By ``np.bincount`` on the household codes: the items are 0/1, so the float sums are
    exact whatever the order (the same numbers as ``groupby().sum()``, without its cost)."""
    codes, uniques = pd.factorize(m["household_code"], sort=True)
    ok = codes >= 0  # a member without a household code belongs to no group
    c, n = codes[ok], len(uniques)
    values = m[SUM_COLS].to_numpy(dtype="float64")[ok]
    isna = np.isnan(values)
    index = pd.Index(uniques, name="household_code")
    totals = pd.DataFrame(
        {
            col: np.bincount(c, weights=np.where(isna[:, j], 0.0, values[:, j]), minlength=n)
            for j, col in enumerate(SUM_COLS)
        },
        index=index,
    )
    unknown = pd.DataFrame(
        {col: np.bincount(c[isna[:, j]], minlength=n) for j, col in enumerate(SUM_COLS)},
        index=index,
    ).astype("int64")
    totals["size"] = np.bincount(c, minlength=n).astype("int64")
    return totals, unknown


def household_state(
    tables: dict[str, pd.DataFrame],
    on: pd.Timestamp,
    fiscal_year: int,
    persons: pd.Index,
    coverage: Coverage | None = None,
) -> pd.DataFrame:
    """Household facts for each person in ``persons`` on date ``on`` (index resident_code).

    Members are people with an open household_history span on ``on`` who have not moved out
    or died. Items about "household members" exclude the person themself (sum over the
    household minus the person's own value); household-level receipts include everyone. An
    item that depends on a member whose resident row is missing is NaN unless another member
    already makes it 1; ``hh_unknown_members`` counts such members (not a panel column).
    """
    m = _member_records(_members(tables, on, persons), tables, on, fiscal_year)
    totals, unknown = _household_sums(m)
    me = m[codes_in(m["resident_code"], persons)].set_index("resident_code")
    tot = totals.reindex(me["household_code"].to_numpy()).set_axis(me.index)
    unk = unknown.reindex(me["household_code"].to_numpy()).set_axis(me.index)
    others = tot[SUM_COLS] - me[SUM_COLS].fillna(0.0)  # members other than the person
    others_unk = unk - me[SUM_COLS].isna().astype(int)
    out = _household_items(me, tot, unk, others, others_unk, tables, on)
    out["yc_two_plus_under6"] = (
        (tot["under6"] >= 2)
        .astype("float64")
        .where((tot["under6"] >= 2) | (tot["under6"] + unk["under6"] < 2))
    )
    out["hh_care_level_max"] = pd.Series(_care_max_other(m, me), index=me.index)
    out["hh_unknown_members"] = others_unk["adult"].astype("float64")
    # yearly tables that do not reach back to FY t-1 (export starts later): unknown, not 0
    if _first_year(coverage, tables, "school_aid", fiscal_year) > fiscal_year - 1:
        for col in ("hh_school_aid", "yc_school_aid"):
            out[col] = out[col].where(out[col] > 0)
    if _first_year(coverage, tables, "school_register", fiscal_year) > fiscal_year - 1:
        for col in ("hh_siblings_special_needs", "yc_sibling_special_needs"):
            out[col] = pd.Series(np.nan, index=me.index)
    return pd.DataFrame(out, index=me.index, copy=False)


def _household_items(
    me: pd.DataFrame,
    tot: pd.DataFrame,
    unk: pd.DataFrame,
    others: pd.DataFrame,
    others_unk: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    on: pd.Timestamp,
) -> dict[str, pd.Series]:
    pa = tables["public_assistance"]
    pa_now = pa.loc[active_at(pa, "start_date", "end_date", on), "household_code"].unique()
    three_back = on - pd.DateOffset(years=3)
    pa_3 = pa.loc[
        (pa["start_date"] < on) & (pa["end_date"].isna() | (pa["end_date"] >= three_back)),
        "household_code",
    ].unique()
    out: dict[str, pd.Series] = {}
    out["household_id"] = me["household_code"]
    out["hh_size"] = tot["size"].astype("float64")
    parent_col = me["relationship"].map(PARENT_OF)
    parent_count = pd.Series(np.nan, index=me.index)
    for rel_col in PARENT_OF.values():
        sel = parent_col == rel_col
        parent_count[sel] = _count(others.loc[sel, rel_col], others_unk.loc[sel, rel_col])
    out["hh_parent_count"] = parent_count
    out["hh_single_parent"] = (parent_count == 1).astype("float64").where(parent_count.notna())
    out["hh_members_75plus"] = _count(others["age75"], others_unk["age75"])
    out["hh_children_under6"] = _count(tot["under6"], unk["under6"])
    out["hh_foreign_members"] = _count(others["foreign"], others_unk["foreign"])
    out["hh_care_support_members"] = others["care_support"]
    out["hh_care_need_members"] = others["care_need"]
    out["hh_disabled_members"] = others["handbook_any"]
    out["hh_public_assistance"] = me["household_code"].isin(pa_now).astype("float64")
    out["hh_public_assistance_3fy"] = me["household_code"].isin(pa_3).astype("float64")
    out["hh_child_rearing_allowance"] = (others["child_rearing"] > 0).astype("float64")
    out["hh_special_child_allowance"] = (tot["special_child"] > 0).astype("float64")
    out["hh_single_parent_medical"] = (tot["sp_medical"] > 0).astype("float64")
    out["hh_school_aid"] = tot["school_aid"]
    out["hh_siblings_special_needs"] = others["special_needs"]
    # the 12 young-carer items (docs/domain.md §4); the nursery item is added per child later
    out["yc_indep_support_ever"] = (others["indep_ever"] > 0).astype("float64")
    out["yc_member_75plus"] = _any(others["age75"], others_unk["age75"])
    out["yc_member_care_need"] = (others["care_need"] > 0).astype("float64")
    out["yc_member_disability_handbook"] = (others["handbook_pm"] > 0).astype("float64")
    out["yc_foreign_member"] = _any(others["foreign"], others_unk["foreign"])
    out["yc_public_assistance"] = out["hh_public_assistance"]
    out["yc_child_rearing_allowance"] = out["hh_child_rearing_allowance"]
    out["yc_school_aid"] = (tot["school_aid"] > 0).astype("float64")
    out["yc_member_indep_support"] = (others["indep_active"] > 0).astype("float64")
    out["yc_sibling_special_needs"] = (others["special_needs"] > 0).astype("float64")
    return out


HOUSEHOLD_COLUMNS = [
    "hh_size",
    "hh_parent_count",
    "hh_single_parent",
    "hh_members_75plus",
    "hh_children_under6",
    "hh_foreign_members",
    "hh_care_support_members",
    "hh_care_need_members",
    "hh_care_level_max",
    "hh_disabled_members",
    "hh_public_assistance",
    "hh_public_assistance_3fy",
    "hh_child_rearing_allowance",
    "hh_special_child_allowance",
    "hh_single_parent_medical",
    "hh_school_aid",
    "hh_siblings_special_needs",
]


def delta_features(
    spine: pd.DataFrame, now: pd.DataFrame, before: pd.DataFrame | None, on: pd.Timestamp
) -> pd.DataFrame:
    """Change since the previous as-of date; NaN where the child was not here a year earlier."""
    idx = spine.index
    out = pd.DataFrame(index=idx)
    prev_on = on - pd.DateOffset(years=1)
    was_here = resident_on(spine, prev_on)
    before = before if before is not None else pd.DataFrame(columns=now.columns)
    before = before.reindex(idx[was_here.to_numpy()]).reindex(idx)
    now = now.reindex(idx)
    out["delta_hh_size"] = now["hh_size"] - before["hh_size"]

    def became(col: str) -> pd.Series:
        res = ((now[col] == 1) & (before[col] == 0)).astype("float64")
        return res.where(now[col].notna() & before[col].notna())

    out["delta_new_public_assistance"] = became("hh_public_assistance")
    out["delta_became_single_parent"] = became("hh_single_parent")
    started = (now["hh_care_need_members"] > 0) & (before["hh_care_need_members"] == 0)
    out["delta_new_care_need"] = started.astype("float64").where(
        now["hh_care_need_members"].notna() & before["hh_care_need_members"].notna()
    )
    changed = (now["household_id"] != before["household_id"]).astype("float64")
    out["delta_household_changed"] = changed.where(
        now["household_id"].notna() & before["household_id"].notna()
    )
    mi = spine["move_in_date"]
    out["delta_moved_in_last_fy"] = ((mi >= prev_on) & (mi < on)).fillna(False).astype("float64")
    return out


def young_carer_items(
    spine: pd.DataFrame,
    household: pd.DataFrame,
    child: pd.DataFrame,
    nursery_from: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The 12 items as named binary columns plus the count; NaN items do not count."""
    idx = spine.index
    if nursery_from is None:
        nursery_from = pd.Timestamp.min
    items = household.reindex(idx)[[c for c in YC_ITEM_NAMES if c != "yc_no_nursery"]].copy()
    enrolled_ever = child["child_nursery_ever"]
    arrived_age = (spine["move_in_date"].dt.year - spine["birth_date"].dt.year) * 12 + (
        spine["move_in_date"].dt.month - spine["birth_date"].dt.month
    )
    preschool_here = (spine["move_in_date"].isna() | (arrived_age < 36)).fillna(False)
    covered = spine["move_in_date"].fillna(spine["birth_date"]) >= nursery_from
    no_nursery = pd.Series(np.nan, index=idx)
    no_nursery[enrolled_ever == 0] = 1.0
    # an in-mover who arrived before age 3: the preschool years were spent here
    no_nursery[enrolled_ever.isna() & preschool_here & covered] = 1.0
    no_nursery[enrolled_ever == 1] = 0.0
    items["yc_no_nursery"] = no_nursery
    items = items[YC_ITEM_NAMES]
    items["yc_rule_score"] = (items[YC_ITEM_NAMES] == 1).sum(axis=1).astype("float64")
    items["yc_items_unknown"] = items[YC_ITEM_NAMES].isna().sum(axis=1).astype("float64")
    return items


# ---------------------------------------------------------------------------------------------
# Missingness (the stage writes it; the report tables and plots are in helpers.panel.report)
# ---------------------------------------------------------------------------------------------


def _share_missing(panel: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``panel[cols].isna().groupby(panel["fiscal_year"]).mean()`` by counting in numpy: the
    same shares (missing count / rows, one division each), column by column, without a
    wide boolean frame (the panel writer calls this once per year)."""
    fy = panel["fiscal_year"].to_numpy()
    years = np.unique(fy)
    # one year (the writer's case): every row, no selection copy
    sels: list[np.ndarray | None] = [None] if len(years) == 1 else [fy == y for y in years]
    rows = np.array([len(fy) if sel is None else sel.sum() for sel in sels])
    counts = np.zeros((len(years), len(cols)), dtype="int64")
    for j, c in enumerate(cols):
        isna = panel[c].isna().to_numpy()
        for i, sel in enumerate(sels):
            counts[i, j] = np.count_nonzero(isna if sel is None else isna[sel])
    return pd.DataFrame(
        (counts / rows[:, None]).astype("float64").reshape(len(years), len(cols)),
        index=pd.Index(years, name="fiscal_year"),
        columns=pd.Index(cols),
    )


def missingness_table(panel: pd.DataFrame, catalogue: pd.DataFrame) -> pd.DataFrame:
    """Share missing per column and fiscal year, with the stated treatment."""
    cols = [
        c for c in catalogue["name"] if c in panel.columns and c not in ("child_id", "fiscal_year")
    ]
    miss = _share_missing(panel, cols)
    long = miss.stack().rename("share_missing").reset_index()
    long.columns = ["fiscal_year", "name", "share_missing"]
    n = panel.groupby("fiscal_year").size().rename("rows")
    long = long.merge(n, left_on="fiscal_year", right_index=True)
    meta = catalogue.set_index("name")[["role", "missing_treatment"]]
    long = long.merge(meta, left_on="name", right_index=True)
    long["treatment"] = long["missing_treatment"].map(MISSING_TREATMENTS)
    return (
        long[
            [
                "name",
                "fiscal_year",
                "rows",
                "share_missing",
                "role",
                "missing_treatment",
                "treatment",
            ]
        ]
        .sort_values(["name", "fiscal_year"])
        .reset_index(drop=True)
    )
