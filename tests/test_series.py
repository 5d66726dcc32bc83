"""Series mode (plgraph.inference.series) on real Uni-FEP series: the GP's interpolation and
uncertainty, the prior's down-weighting, anchoring, acquisition, and the input rules."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from scipy.stats import spearmanr
from scipy.stats import t as student_t

from plgraph.errors import InputError
from plgraph.inference.series import (
    ASSAY_NOISE_STD,
    BLEND_GUARD,
    DEFAULT_STD,
    MIN_PREDICTIVE_DOF,
    RECORD_FLOOR,
    RECORD_TRUST,
    anchored,
    anchoring_error_ratio,
    blend,
    count_fingerprints,
    gp_alone,
    gp_anchored,
    gp_prior,
    heavy_atoms,
    method_for_record,
    predictive_dof,
    prior_slope,
    suggest,
    tanimoto,
)

UNI_FEP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uni-fep"
# 45 BTK inhibitors (pK 5.2-9.6); the far ligands are adenosine-kinase nucleosides.
SERIES = "ChEMBL|BTK|CHEMBL3627421"
FAR_SERIES = "ChEMBL|ADK|CHEMBL642224"
KCAL_PER_PK = 1.3637


def read_series(name: str) -> tuple[np.ndarray, np.ndarray, list[Chem.Mol]]:
    """Count fingerprints, pK and mols of a Uni-FEP series (explicit H removed)."""
    with (UNI_FEP / name / "result_dG.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    mols = [Chem.RemoveHs(Chem.MolFromSmiles(row["ligand_smiles"])) for row in rows]
    pk = np.array([-float(row["exp_dG (kcal/mol)"]) / KCAL_PER_PK for row in rows])
    return count_fingerprints(mols), pk, mols


@pytest.fixture(scope="module")
def btk():
    return read_series(SERIES)


def split(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return order[:k], order[k:]


def test_fingerprints_count_and_heavy_atoms_ignore_hydrogens():
    fps = count_fingerprints(["[H]OC([H])([H])C([H])([H])[H]", "CCO", "c1ccccc1"])
    assert fps.shape == (3, 2048)
    assert fps.sum(axis=1)[1] > 3  # counts, not bits: CCO has more environments than bits set
    assert heavy_atoms(["[H]OC([H])([H])C([H])([H])[H]", "c1ccccc1"]).tolist() == [3, 6]
    similarity = tanimoto(fps, fps)
    assert np.allclose(np.diag(similarity), 1.0)
    assert similarity[0, 1] == pytest.approx(1.0)  # explicit H in SMILES: the same molecule
    assert similarity[1, 2] == pytest.approx(0.0)


def test_gp_interpolates_a_measured_ligand(btk):
    fps, pk, _ = btk
    measured, query = split(len(pk), 15, seed=0)
    probe = np.concatenate([measured[:3], query[:3]])
    result = gp_alone(fps[measured], pk[measured], fps[probe])
    # Measured ligands: the mean stays within the assay noise of the measurement, the std is
    # near the noise; unmeasured ones are less certain.
    assert np.abs(result.mean[:3] - pk[measured[:3]]).max() < 2 * ASSAY_NOISE_STD
    assert result.std[:3].max() < result.std[3:].min()


def test_std_grows_far_from_the_measured_ligands(btk):
    fps, pk, _ = btk
    far_fps, _, _ = read_series(FAR_SERIES)
    measured, query = split(len(pk), 15, seed=1)
    assert tanimoto(far_fps, fps[measured]).max() < 0.3
    result = gp_alone(fps[measured], pk[measured], np.vstack([fps[query], far_fps]))
    near_std, far_std = result.std[:len(query)], result.std[len(query):]
    assert far_std.min() > near_std.max()
    # Far from every measured ligand the GP falls back to the measured mean.
    assert np.abs(result.mean[len(query):] - pk[measured].mean()).max() < 0.2


def test_the_std_is_a_student_t_s_with_k_minus_one_dof_and_the_means_are_untouched(btk):
    """The plug-in std is widened to a Student-t's (its 2 std is its 95 % interval); the means,
    and so every ranking, stay those of the plug-in method; k < 2 stays a Gaussian."""
    fps, pk, _ = btk
    prior = pk + np.random.default_rng(6).normal(0.0, 0.5, len(pk))
    for k, dof in ((5, 4), (10, 9), (2, MIN_PREDICTIVE_DOF)):
        measured, query = split(len(pk), k, seed=k)
        for method in (gp_alone, gp_prior, anchored, gp_anchored, blend):
            args = (fps[measured], pk[measured], fps[query], prior[measured], prior[query])
            widened, plug_in = method(*args), method.__wrapped__(*args)
            assert widened.dof == predictive_dof(k) == dof
            assert np.array_equal(widened.mean, plug_in.mean)
            assert np.allclose(widened.std, plug_in.std * math.sqrt(dof / (dof - 2)))
    # From k = 5 on, 2 std is the t's central 95 % interval to within 2 % (1.96-1.99 std).
    for k in (5, 10, 20):
        dof = predictive_dof(k)
        assert 1.95 < student_t.ppf(0.975, dof) / math.sqrt(dof / (dof - 2)) < 2.0
    one = gp_alone(fps[:1], pk[:1], fps[1:])
    assert one.dof is None and np.allclose(one.std, DEFAULT_STD)


def test_the_intervals_are_the_student_t_s_central_ones(btk):
    """The 68 % interval of a t lies inside +-1 std (its tails are heavier than a Gaussian's),
    the 95 % one close to +-2 std; with no fit (k < 2) they are a Gaussian's."""
    fps, pk, _ = btk
    measured, query = split(len(pk), 5, seed=5)
    result = gp_alone(fps[measured], pk[measured], fps[query])
    scale = result.std / math.sqrt(4 / 2)  # dof 4: the std is the scale times sqrt(dof/(dof-2))
    for level in (0.68, 0.95):
        low, high = result.interval(level)
        assert np.allclose(low, result.mean - student_t.ppf((1 + level) / 2, 4) * scale)
        assert np.allclose(high + low, 2 * result.mean)
        inside = student_t.cdf((high - result.mean) / scale, 4) - student_t.cdf(
            (low - result.mean) / scale, 4)
        assert np.allclose(inside, level)
    low, high = result.interval(0.68)
    assert np.all(high - result.mean < 0.85 * result.std)
    low, high = result.interval(0.95)
    assert np.allclose(high - result.mean, 2 * result.std, rtol=0.03)
    one = gp_alone(fps[:1], pk[:1], fps[1:])
    low, high = one.interval(0.95)
    assert np.allclose(high - one.mean, 1.96 * DEFAULT_STD, atol=1e-3)
    for level in (0.0, 1.0, 95):
        with pytest.raises(InputError, match="an interval's level must lie in"):
            result.interval(level)


def test_noise_std_never_falls_below_the_assay_floor(btk):
    fps, _, _ = btk
    # A constant series: the likelihood would drive the noise to 0; the floor holds it at 0.3.
    result = gp_alone(fps[:10], np.full(10, 7.0), fps[10:])
    assert result.noise_std == pytest.approx(ASSAY_NOISE_STD, rel=1e-3)
    assert result.std.min() >= ASSAY_NOISE_STD - 1e-6


def test_gp_prior_drops_a_random_prior_and_is_no_worse_than_gp_alone(btk):
    fps, pk, _ = btk
    scales, losses = [], []
    for seed in range(4):
        measured, query = split(len(pk), 10, seed)
        prior = np.random.default_rng(100 + seed).normal(7.0, 1.0, len(pk))
        alone = gp_alone(fps[measured], pk[measured], fps[query])
        with_prior = gp_prior(fps[measured], pk[measured], fps[query], prior[measured],
                              prior[query])
        scales.append(with_prior.prior_scale)
        losses.append(spearmanr(alone.mean, pk[query])[0]
                      - spearmanr(with_prior.mean, pk[query])[0])
    assert np.mean(scales) < 0.1
    assert np.mean(losses) < 0.05


def test_gp_prior_with_the_true_values_beats_gp_alone(btk):
    fps, pk, _ = btk
    measured, query = split(len(pk), 10, seed=2)
    alone = gp_alone(fps[measured], pk[measured], fps[query])
    perfect = gp_prior(fps[measured], pk[measured], fps[query], pk[measured], pk[query])
    assert perfect.prior_scale == pytest.approx(1.0, abs=0.2)
    assert spearmanr(perfect.mean, pk[query])[0] > spearmanr(alone.mean, pk[query])[0] + 0.1
    assert np.abs(perfect.mean - pk[query]).max() < 0.5


def test_gp_prior_drops_a_reversed_prior(btk):
    # s >= 0: a prior that ranks the series backwards is not turned around, it is dropped.
    fps, pk, _ = btk
    measured, query = split(len(pk), 10, seed=3)
    alone = gp_alone(fps[measured], pk[measured], fps[query])
    reversed_ = gp_prior(fps[measured], pk[measured], fps[query], -pk[measured], -pk[query])
    assert reversed_.prior_scale == 0.0
    assert np.allclose(reversed_.mean, alone.mean)


def test_anchored_with_one_measurement_is_the_offset(btk):
    fps, pk, _ = btk
    prior = np.linspace(5.0, 8.0, len(pk))
    for method in (anchored, gp_anchored, gp_prior):
        result = method(fps[:1], pk[:1], fps[1:], prior[:1], prior[1:])
        assert np.allclose(result.mean, prior[1:] + pk[0] - prior[0])
        assert np.allclose(result.std, DEFAULT_STD)


def test_anchored_on_a_perfect_prior_returns_it(btk):
    fps, pk, _ = btk
    measured, query = split(len(pk), 5, seed=4)
    result = anchored(fps[measured], pk[measured], fps[query], pk[measured], pk[query])
    assert np.allclose(result.mean, pk[query])
    assert (result.std >= ASSAY_NOISE_STD).all()


def test_blend_mixes_anchoring_in_where_it_predicts_the_measured_ligands(btk):
    fps, pk, _ = btk
    measured, query = split(len(pk), 10, seed=4)
    close = pk + np.random.default_rng(4).normal(0.0, 0.2, len(pk))  # a good prior
    alone = gp_alone(fps[measured], pk[measured], fps[query])
    mixed = blend(fps[measured], pk[measured], fps[query], close[measured], close[query])
    anchors = anchored(fps[measured], pk[measured], fps[query], close[measured], close[query])
    assert mixed.prior_scale == 0.5
    assert np.allclose(mixed.mean, (alone.mean + anchors.mean) / 2)
    # The mixture's variance holds both variances and the disagreement of the two means.
    assert (mixed.std >= np.minimum(alone.std, anchors.std) - 1e-9).all()
    assert spearmanr(mixed.mean, pk[query])[0] > spearmanr(alone.mean, pk[query])[0] + 0.1


@pytest.mark.parametrize("prior_of", [
    lambda pk, seed: -pk,  # ranks the series backwards
    lambda pk, seed: np.random.default_rng(200 + seed).normal(7.0, 1.0, len(pk)),
])
def test_blend_falls_back_to_gp_alone_where_anchoring_predicts_worse(btk, prior_of):
    fps, pk, _ = btk
    fallbacks = 0
    for seed in range(4):
        measured, query = split(len(pk), 10, seed)
        prior = prior_of(pk, seed)
        alone = gp_alone(fps[measured], pk[measured], fps[query])
        mixed = blend(fps[measured], pk[measured], fps[query], prior[measured], prior[query])
        if mixed.prior_scale == 0.0:
            fallbacks += 1
            assert np.array_equal(mixed.mean, alone.mean)
            assert np.array_equal(mixed.std, alone.std)
    assert fallbacks >= 3


def test_blend_shrinks_a_prior_right_in_order_but_wrong_in_scale(btk):
    """A prior that ranks the series well with its differences three times too wide (FEP's
    habit, at twice) fails the unscaled guard; shrunk by its slope it earns the mixture."""
    fps, pk, _ = btk
    measured, query = split(len(pk), 10, seed=4)
    noise = np.random.default_rng(4).normal(0.0, 0.2, len(pk))
    wide = 7.0 + 3.0 * (pk - pk.mean() + noise)
    assert anchoring_error_ratio(fps[measured], pk[measured], wide[measured]) > BLEND_GUARD
    slope = prior_slope(wide[measured], pk[measured])
    assert 0.25 < slope < 0.4
    mixed = blend(fps[measured], pk[measured], fps[query], wide[measured], wide[query])
    shrunk = slope * wide
    expected = blend(fps[measured], pk[measured], fps[query], shrunk[measured], shrunk[query],
                     guard=math.inf)
    assert mixed.prior_scale == pytest.approx(0.5 * slope)
    assert np.allclose(mixed.mean, expected.mean) and np.allclose(mixed.std, expected.std)
    alone = gp_alone(fps[measured], pk[measured], fps[query])
    assert spearmanr(mixed.mean, pk[query])[0] > spearmanr(alone.mean, pk[query])[0] + 0.1
    # Without the second chance the same prior is left out.
    assert blend(fps[measured], pk[measured], fps[query], wide[measured], wide[query],
                 scaled_guard=0.0).prior_scale == 0.0


def test_a_prior_s_record_chooses_how_far_series_mode_trusts_it():
    for record in (None, -0.3, 0.0, RECORD_FLOOR - 0.01):
        choice = method_for_record(record)
        assert choice.method == "gp_alone" and choice.options == {}
    unknown = method_for_record(None).why
    assert "no record of ranking series of protein families it never saw" in unknown
    assert "mean rho 0.05, is below 0.1" in method_for_record(0.05).why
    for record in (RECORD_FLOOR, 0.34, RECORD_TRUST - 0.01):
        choice = method_for_record(record)
        assert choice.method == "blend" and choice.options == {}  # the guards stand
    assert "earns it the guarded blend" in method_for_record(0.34).why
    for record in (RECORD_TRUST, 0.9):
        choice = method_for_record(record)
        assert choice.method == "blend"
        assert choice.options == {"guard": math.inf, "independent": True}
    assert "an estimate independent of the GP's" in method_for_record(0.6).why
    with pytest.raises(InputError, match="a prior's record must be finite"):
        method_for_record(math.nan)


def test_blend_mixing_always_uses_a_prior_the_guard_would_leave_out(btk):
    """What a record at FEP's level buys: a prior that the leave-one-out test refuses on a
    draw is still mixed in, exactly the unguarded equal mixture."""
    fps, pk, _ = btk
    always = method_for_record(RECORD_TRUST).options
    for seed in range(8):
        measured, query = split(len(pk), 5, seed)
        prior = -pk  # backwards: the guard refuses it
        guarded = blend(fps[measured], pk[measured], fps[query], prior[measured], prior[query])
        if guarded.prior_scale != 0:
            continue
        mixed = blend(fps[measured], pk[measured], fps[query], prior[measured], prior[query],
                      **always)
        alone = gp_alone(fps[measured], pk[measured], fps[query])
        anchors = anchored(fps[measured], pk[measured], fps[query], prior[measured],
                           prior[query])
        assert mixed.prior_scale == 0.5
        assert np.allclose(mixed.mean, (alone.mean + anchors.mean) / 2)
        # Trusted, the two are independent estimates: the variance of their mean plus their
        # spread (both widened to the Student-t's), narrower than the guarded mixture's.
        widening = math.sqrt(4 / 2)  # the t's std in units of its scale at dof 4
        variance = ((alone.std**2 + anchors.std**2) / 4
                    + (widening * (alone.mean - anchors.mean) / 2) ** 2)
        assert np.allclose(mixed.std, np.sqrt(variance))
        shared = blend(fps[measured], pk[measured], fps[query], prior[measured], prior[query],
                       guard=math.inf)
        assert np.array_equal(shared.mean, mixed.mean) and np.all(shared.std > mixed.std)
        return
    pytest.fail("the guard never refused a backwards prior in 8 draws")


def test_prior_slope_shrinks_but_never_amplifies_or_reverses():
    prior = np.array([5.0, 6.0, 7.5, 8.0, 9.0])
    assert prior_slope(prior, 0.4 * prior + 2.0) == pytest.approx(0.4)
    assert prior_slope(prior, 3.0 * prior) == 1.0
    assert prior_slope(prior, -prior) == 0.0
    assert prior_slope(np.full(5, 7.0), prior) == 0.0


def test_no_measurement_gives_the_prior_and_gp_alone_refuses(btk):
    fps, _, _ = btk
    prior = np.linspace(5.0, 8.0, 5)
    result = gp_prior(fps[:0], [], fps[:5], [], prior)
    assert np.allclose(result.mean, prior) and np.allclose(result.std, DEFAULT_STD)
    with pytest.raises(InputError, match="needs a prior"):
        gp_alone(fps[:0], [], fps[:5])


def test_suggest_picks_the_highest_ucb_and_ei():
    mean = np.array([7.0, 6.0, 7.5, 5.0])
    std = np.array([0.3, 2.0, 0.3, 0.3])
    assert suggest(mean, std, 1, best_so_far=7.5, method="ucb", kappa=1.0).tolist() == [1]
    assert suggest(mean, std, 2, best_so_far=7.5, method="ucb", kappa=0.0).tolist() == [2, 0]
    # Far below the best but uncertain: only the uncertain one can improve on 7.5 much.
    assert suggest(mean, std, 1, best_so_far=7.5, method="ei").tolist() == [1]


@pytest.mark.parametrize(("call", "rule"), [
    (lambda f, y: gp_alone(f[:5], y[:4], f[5:]), "one entry per ligand"),
    (lambda f, y: gp_alone(f[:5], np.r_[y[:4], np.nan], f[5:]), "must be finite"),
    (lambda f, y: gp_alone(f[:5], y[:5], f[5:, :100]), "as many bits"),
    (lambda f, y: gp_prior(f[:5], y[:5], f[5:], y[:5], None), "for both"),
    (lambda f, y: anchored(f[:5], y[:5], f[5:], None, None), "needs a prior"),
    (lambda f, y: suggest(y[:5], np.ones(5), 6, 7.0), "between 1 and"),
    (lambda f, y: suggest(y[:5], np.ones(5), 1, 7.0, method="greedy"), "must be one of"),
    (lambda f, y: suggest(y[:5], np.zeros(5), 1, 7.0), "> 0"),
])
def test_bad_input_raises_naming_the_rule(btk, call, rule):
    fps, pk, _ = btk
    with pytest.raises(InputError, match=rule):
        call(fps, pk)
