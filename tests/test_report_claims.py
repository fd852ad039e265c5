"""Paired intervals over seeds and the claims builder, on synthetic result tables."""
from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import pandas as pd
import pytest

from harness.errors import DataError
from harness.report import claims as C
from harness.report import stats, tables

ROOT = Path(__file__).resolve().parents[1]
HET1, HET2, HOM = ("tc", "sf", "heterogeneous"), ("tf", "sc", "heterogeneous"), ("tc", "sc",
                                                                                  "homogeneous")


def test_t_quantile_closed_forms():
    # df 1 (Cauchy): tan(pi (p - 1/2)); df 2: t / sqrt(2 + t^2) = 2p - 1 -> t^2 = 2 q^2 / (1 - q^2)
    assert stats.t_quantile(1) == pytest.approx(math.tan(math.pi * 0.475), abs=1e-6)
    assert stats.t_quantile(2) == pytest.approx(math.sqrt(2 * 0.95**2 / (1 - 0.95**2)), abs=1e-6)
    assert stats.t_quantile(4) == pytest.approx(2.776445, abs=1e-5)  # printed t tables
    normal = NormalDist().inv_cdf(0.975)
    assert normal < stats.t_quantile(400) < normal + 0.01


def test_t_interval_by_hand():
    got = stats.t_interval([3.0, 4.0, 2.0])  # mean 3, s = 1, n = 3
    half = stats.t_quantile(2) / math.sqrt(3)
    assert (got.mean, got.n) == (3.0, 3)
    assert (got.lo, got.hi) == pytest.approx((3 - half, 3 + half), abs=1e-9)
    assert got.excludes_zero
    one = stats.t_interval([1.5])
    assert one.mean == 1.5 and math.isnan(one.lo) and not one.excludes_zero
    # paired by seed: only the seeds both have; seed 7 has no partner
    paired = stats.paired_interval({0: 53.0, 1: 56.0, 2: 56.0, 7: 1.0}, {0: 50.0, 1: 52.0, 2: 54.0})
    assert (paired.mean, paired.n) == (3.0, 3)


@pytest.mark.parametrize("values, threshold, expected", [
    ([2.0, 2.5, 3.0], 0.0, "supported"),
    ([-2.0, -2.5, -3.0], 0.0, "contradicted"),
    ([-1.0, 2.0, 0.5], 0.0, "inconclusive"),      # spans 0
    ([2.0, 2.5], 0.0, "inconclusive"),            # clear, but 2 seeds
    ([2.0, 2.5, 3.0], 5.0, "contradicted"),       # below a threshold of +5
])
def test_verdict(values, threshold, expected):
    assert stats.verdict(stats.t_interval(values), threshold) == expected


def _rows(pair, method_values: dict[str, list[float]], teacher_miou: float = 70.0) -> list[dict]:
    teacher, student, kind = pair
    return [{"dataset": "synth", "teacher": teacher, "student": student, "kind": kind,
             "method": method, "seeds": " ".join(str(s) for s in range(len(values))),
             "mious": " ".join(f"{v:.4f}" for v in values), "teacher_miou": teacher_miou}
            for method, values in method_values.items()]


def _claim(**fields) -> pd.DataFrame:
    row = {"claim": "c", "statement": "s", "test": "improves_student", "method": "heteroakd",
           "versus": "baseline", "pairs": "heterogeneous", "over": "each", "quantifier": "all",
           "threshold": 0.0, "published_effect": math.nan, "source": "a paper"}
    row.update(fields)
    return pd.DataFrame([row])


def _table() -> pd.DataFrame:
    """HET1: heteroakd beats the baseline by +2, +3, +4 (clear) and KD by -1, +1, 0 (spans 0).
    HET2: heteroakd loses to the baseline by -3, -4, -2 (reversed). HOM: +2, +3, +2."""
    return pd.DataFrame(
        _rows(HET1, {"baseline": [50, 52, 54], "kd": [53, 54, 58], "heteroakd": [52, 55, 58]})
        + _rows(HET2, {"baseline": [40, 41, 42], "kd": [41, 42, 43], "heteroakd": [37, 37, 40]},
                teacher_miou=38.0)
        + _rows(HOM, {"baseline": [40, 41, 42], "heteroakd": [42, 44, 44]}))


def test_claims_clear_spanning_reversed_and_few_seeds():
    table = _table()
    res = C.Results(table)
    per_pair = C.build_claims(res, _claim())
    assert list(per_pair.columns) == C.CLAIMS_OUT_COLUMNS
    first, second = per_pair.iloc[0], per_pair.iloc[1]
    assert first.comparison == "tc -> sf: heteroakd - baseline"
    assert (first.effect, first.n, first.verdict) == (3.0, 3, "supported")
    half = stats.t_quantile(2) * 1.0 / math.sqrt(3)  # differences 2, 3, 4: s = 1
    assert (first.lo, first.hi) == pytest.approx((3 - half, 3 + half))
    assert (second.effect, second.verdict) == (-3.0, "contradicted")
    assert set(per_pair.claim_verdict) == {"contradicted"}  # one pair contradicts "each"

    beats = C.build_claims(res, _claim(test="beats_methods", versus=""))
    assert list(beats.comparison) == ["tc -> sf: heteroakd - kd", "tf -> sc: heteroakd - kd"]
    assert list(beats.effect) == [0.0, pytest.approx(-4.0)]
    assert list(beats.verdict) == ["inconclusive", "contradicted"]  # -1, +1, 0 spans 0

    # the homogeneous average (one pair here) with its published figure
    hom = C.build_claims(res, _claim(pairs="homogeneous", over="mean", published_effect=1.61))
    assert hom.comparison.iloc[0] == "mean over 1 homogeneous pairs: heteroakd - baseline"
    assert (hom.effect.iloc[0], hom.verdict.iloc[0]) == (pytest.approx(7 / 3), "supported")
    assert hom.published_effect.iloc[0] == 1.61

    # the same clear effect with two seeds is inconclusive
    two = table.copy()
    two["seeds"], two["mious"] = "0 1", two.mious.map(lambda m: " ".join(m.split()[:2]))
    assert C.build_claims(C.Results(two), _claim()).verdict.iloc[0] == "inconclusive"


def test_claims_mean_over_pairs_and_any_quantifier():
    res = C.Results(_table())
    mean = C.build_claims(res, _claim(over="mean"))  # per seed: (2 - 3)/2, (3 - 4)/2, (4 - 2)/2
    assert mean.effect.iloc[0] == pytest.approx(0.0) and mean.verdict.iloc[0] == "inconclusive"
    # HET2's students (37, 37, 40) against its teacher 38: spans; HET1's KD 53, 54, 58 below 70
    exceeds = C.build_claims(res, _claim(test="exceeds_teacher", method="", versus="teacher",
                                         pairs="all", quantifier="any"))
    got = dict(zip(exceeds.comparison, exceeds.verdict))
    assert got["tf -> sc: heteroakd - teacher"] == "inconclusive"
    assert got["tc -> sf: kd - teacher"] == "contradicted"
    assert got["tf -> sc: kd - teacher"] == "supported"  # 41, 42, 43 against 38
    assert len(got) == 5 and set(exceeds.claim_verdict) == {"supported"}  # "any" pair
    assert C.combine(["contradicted", "supported"], "any") == "supported"
    assert C.combine(["contradicted", "contradicted"], "any") == "contradicted"
    assert C.combine(["supported", "inconclusive"], "all") == "inconclusive"


def test_claims_ablation_sensitivity_cka_and_unmeasured():
    table = _table()
    ablation = pd.DataFrame(_rows(HET1, {"full": [52, 55, 58], "no_kmm": [50, 53, 55]}))
    ablation = ablation.rename(columns={"method": "variant"})
    sens = pd.DataFrame([{"teacher": "tc", "student": "sf", "axis1": "lambda1", "value1": 0.1,
                          "axis2": "lambda2", "value2": 2.0, "seeds": "0 1 2",
                          "mious": "51 53 55"}])
    cka = pd.DataFrame([{"seed": seed, "kind": kind, "teacher_stage": i, "student_stage": j,
                         "cka": value}
                        for seed, (hom, het) in enumerate([(0.7, 0.4), (0.65, 0.4), (0.8, 0.45)])
                        for kind, value in (("homogeneous", hom), ("heterogeneous", het))
                        for i, j in ((0, 0), (1, 1), (0, 1))])
    cka.loc[cka.teacher_stage != cka.student_stage, "cka"] = 0.0  # off-diagonal: ignored
    res = C.Results(table, ablation=ablation, sensitivity=sens, cka=cka)
    abl = C.build_claims(res, _claim(test="ablation_gain", method="full", versus="no_kmm",
                                     pairs="all"))
    assert abl.comparison.iloc[0] == "tc -> sf: full - no_kmm"
    assert (abl.effect.iloc[0], abl.verdict.iloc[0]) == (pytest.approx(7 / 3), "supported")
    sen = C.build_claims(res, _claim(test="sensitivity_gain", pairs="all"))
    assert sen.comparison.iloc[0] == "tc -> sf: lambda1=0.1, lambda2=2 - baseline"
    # +1 on every seed: a zero-width interval above 0
    assert (sen.effect.iloc[0], sen.lo.iloc[0], sen.verdict.iloc[0]) == (1.0, 1.0, "supported")
    gap = C.build_claims(res, _claim(test="cka_gap", method="", versus="", over="mean"))
    assert gap.effect.iloc[0] == pytest.approx((0.3 + 0.25 + 0.35) / 3)
    assert gap.n.iloc[0] == 3 and gap.verdict.iloc[0] == "supported"
    none = C.build_claims(C.Results(table), _claim(test="ablation_gain", method="full",
                                                   versus="no_kem", pairs="all"))
    assert none.comparison.iloc[0] == "not measured: synth has no results for this test"
    assert (none.n.iloc[0], none.verdict.iloc[0]) == (0, "inconclusive")


def test_claims_file_of_the_project_is_valid_and_markdown(tmp_path: Path):
    claims = C.load_claims(ROOT / "results/published/published_claims.csv")
    assert len(claims) == 8 and (claims.source != "").all()
    assert set(claims.test) == set(C.CHOICES["test"])
    assert claims.set_index("claim").published_effect["improves_homogeneous"] == 1.61
    assert claims.set_index("claim").published_effect["every_lambda_improves"] == 0.48
    frame = C.build_claims(C.Results(_table()), claims)
    text = C.claims_markdown(frame)
    assert text.startswith("# The seed paper's claims on synth")
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "| contradicted " in lines["improves_heterogeneous"]
    assert "| inconclusive " in lines["full_beats_no_kmm"]  # no ablation table given
    assert "+3.00 [" in text


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace(",a paper\n", ",\n"), "empty source"),
    (lambda t: t.replace("improves_student", "improves"), "test 'improves'"),
    (lambda t: t.replace(",0,,a paper", ",zero,,a paper"), "threshold 'zero'"),
    (lambda t: t + t.splitlines()[1] + "\n", "more than once"),
    (lambda t: t.replace("claim,", "name,", 1), "expected exactly"),
])
def test_claims_file_refusals(tmp_path: Path, edit, message):
    header = ",".join(C.CLAIM_COLUMNS)
    good = f"{header}\nc,s,improves_student,heteroakd,baseline,all,each,all,0,,a paper\n"
    assert len(C.load_claims(_write(tmp_path / "ok.csv", good))) == 1
    with pytest.raises(DataError, match=message):
        C.load_claims(_write(tmp_path / "bad.csv", edit(good)))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_per_seed_round_trip(tmp_path: Path):
    frame = _table()
    out = tmp_path / "t.csv"
    tables.write_frame(frame, out)
    back = pd.read_csv(out)
    assert [tables.per_seed(r) for _, r in back.iterrows()] == \
        [tables.per_seed(r) for _, r in frame.iterrows()]
    with pytest.raises(DataError, match="2 seeds but 3"):
        tables.per_seed({"seeds": "0 1", "mious": "1 2 3"})


def test_claims_command_writes_csv_and_md_or_refuses_before_writing(tmp_path: Path):
    from harness.cli import main

    table = tmp_path / "table_synth.csv"
    tables.write_frame(_table(), table)
    out = tmp_path / "out" / "claims_synth.csv"
    assert main(["report", "claims", "--table", str(table), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == C.CLAIMS_OUT_COLUMNS
    verdicts = dict(zip(frame.claim, frame.claim_verdict))
    assert verdicts["improves_heterogeneous"] == "contradicted"   # HET2: -3, -4, -2
    assert verdicts["improves_homogeneous"] == "supported"        # HOM: +2, +3, +2
    assert verdicts["student_exceeds_teacher"] == "supported"     # HET2's KD above 38
    assert verdicts["full_beats_no_kmm"] == "inconclusive"        # no ablation table given
    assert out.with_suffix(".md").read_text().startswith("# The seed paper's claims on synth")
    # a table without per-seed values: refused (exit 2), nothing written
    _table().drop(columns=["mious"]).to_csv(table, index=False)
    bad_out = tmp_path / "bad" / "claims.csv"
    assert main(["report", "claims", "--table", str(table), "--out", str(bad_out)]) == 2
    assert not bad_out.exists()


def test_claims_file_broken_rows_are_named_by_line(tmp_path: Path):
    header = ",".join(C.CLAIM_COLUMNS)
    stray = f"{header}\nc,s,improves_student,heteroakd,baseline,all,each,all,0,,a, paper\n"
    with pytest.raises(DataError, match="line 2: 12 fields, expected 11"):
        C.load_claims(_write(tmp_path / "stray.csv", stray))
    with pytest.raises(DataError, match="claims file .* does not exist"):
        C.load_claims(tmp_path / "none.csv")
