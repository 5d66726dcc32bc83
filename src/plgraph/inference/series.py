"""Series mode: rank a congeneric series' designed ligands from a few measured ones and a prior.

A medicinal chemist has k = 5-20 measured ligands of a series (pK) and many designed ones to
rank. A model's predictions (or any other prior: FEP, a size trend) are useful there only as far
as the measured ligands confirm them; this module is the small-data learner that decides how far,
and says how sure it is. Every method takes the measured fingerprints and pK, the query
fingerprints and (where it uses one) the prior for both, and returns a mean and a standard
deviation in pK units per query (:class:`SeriesPrediction`):

- ``gp_alone``: a Gaussian process with a Tanimoto (MinMax, on Morgan count fingerprints) kernel
  around the measured mean: what a cheminformatician would run, no prior;
- ``gp_prior``: the same GP around ``c + s * prior`` with ``s >= 0``. ``s`` has a Gaussian prior
  whose variance is fitted by marginal likelihood with the kernel's, and the prior is used only
  where it raises the marginal likelihood clearly: a prior the measured ligands do not support
  falls back to ``s = 0`` (the GP alone) instead of being trusted;
- ``anchored``: each measured ligand r predicts ``pK(r) + prior(q) - prior(r)``; the anchors are
  averaged with weights ``similarity(q, r) ** 3`` (the prior taken at its own scale, s = 1);
- ``gp_anchored``: the GP on the prior's residuals ``pK - prior`` (s = 1 fixed, the offset and
  its smoothing over chemical space fitted): anchoring with the GP's weights and uncertainty;
- ``blend``: the equal mixture of ``anchored`` and ``gp_alone``, used only where anchoring
  predicts the measured ligands (each left out in turn) no worse than the GP; else the GP alone.

Which of these a prior gets can also follow its record (:func:`method_for_record`): what it
has shown on series of protein families it never saw, before this series' few measurements.

The standard deviations are those of a new measurement (they include the assay noise, fitted
with a floor of :data:`ASSAY_NOISE_STD`), from k >= 2 measured ligands the std of a Student-t
with :func:`predictive_dof` degrees of freedom: ±2 std is its central 95 % interval, and
:meth:`SeriesPrediction.interval` gives any central interval (its 68 % one is narrower than
±1 std: a t's tails are heavier than a Gaussian's). With no
measured ligand the prior alone is returned, with one the prior shifted to pass through it; both
with :data:`DEFAULT_STD`.
:func:`suggest` picks the queries to make next (upper confidence bound or expected improvement).

Only numpy, scipy, scikit-learn and RDKit are used (and :mod:`plgraph.errors`): the module is a
leaf, usable without the network.
"""

from __future__ import annotations

import functools
import math
import warnings
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator
from scipy.linalg import cho_solve
from scipy.stats import norm
from scipy.stats import t as student_t
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Kernel, WhiteKernel

from plgraph.errors import InputError

FINGERPRINT_RADIUS = 2
FINGERPRINT_BITS = 2048
# Replicate pK measurements of one ligand in one assay differ by about 0.3 (a common estimate of
# assay reproducibility): no model of the series can fit more closely than that.
ASSAY_NOISE_STD = 0.3
# pK: the std where nothing can be fitted (k = 0 or 1). Measured pK spread within a Uni-FEP
# series is 0.8 (median over the 168 series of >= 20 ligands); rounded up for the unknown offset.
DEFAULT_STD = 1.0
# The anchors' similarity weights are similarity ** ANCHOR_POWER: near analogues dominate. Fixed
# before any measurement, not tuned.
ANCHOR_POWER = 3
# The weight of one pseudo-anchor of DEFAULT_STD spread in the anchored std: a query unlike every
# measured ligand (all similarities well under ANCHOR_PSEUDO_SIMILARITY) gets about DEFAULT_STD.
ANCHOR_PSEUDO_SIMILARITY = 0.3
# nats of log marginal likelihood the prior must add before gp_prior uses it (a Bayes factor of
# e^2 ~ 7). Chosen on the dev part of bench/series_mode.py (series outside the reported sample):
# with a random prior a margin of 1 was still measurably worse than the GP alone at k = 5,
# 2 was not, and 3 gave up half or more of what FEP as the prior added at k = 5 and 10.
EVIDENCE_MARGIN = 2.0
# blend mixes anchoring in only where its leave-one-out squared error on the measured ligands is
# at most BLEND_GUARD times the GP's: "no worse than the GP on what was measured". On the dev
# part (bench/series_mode_guard.py, 88 series) 1.0 kept the gain of today's model at k = 5
# (+0.033 rho over the GP alone, interval above 0) and was not measurably worse at k = 10 and 20;
# with a random prior it cost 0.033 at k = 5 and 0.007 at k = 10. 0.5 would cost 0.010 there but
# keep only 0.007 of the model's gain; no guard was free with a useless prior at k = 5.
BLEND_GUARD = 1.0
# A prior can rank a series well with its differences at the wrong scale (FEP's ΔΔG in Uni-FEP
# spread about twice the measured ones: the fitted slope of measured pK on FEP's has median 0.44
# at k = 10). Where the unscaled anchoring fails BLEND_GUARD, blend tries once more with the
# prior's differences times their least-squares slope on the measured ligands (clipped to
# [0, 1]: a prior is shrunk, never amplified or reversed), mixing that in only if its
# leave-one-out error is at most SCALED_BLEND_GUARD times the GP's. Chosen on the dev part
# (bench/series_mode_guard.py, its second table; 88 series, FEP standing in for a better
# model): FEP's gain over the GP alone rose from +0.111 / +0.067 / -0.001 to +0.179 / +0.131 /
# +0.045 at k = 5 / 10 / 20; today's model and the heavy-atom prior unchanged (their slopes
# are mostly 1 or their first test passes); a random prior cost -0.046 / -0.015 at k = 5 / 10
# instead of -0.033 / -0.007. 1.0 here gained more with FEP (+0.204) and cost twice as much
# with a random prior (-0.061).
SCALED_BLEND_GUARD = 0.85
# A prior's record is its mean per-series Spearman rho on series of protein families it never
# saw (a checkpoint's validation series under a family or target split). Below RECORD_FLOOR it
# is not told from a useless prior and series mode uses the GP alone: with ~30 validation series
# of ~20 ligands a useless model's record lies within about +-0.08 of 0 (the per-series rho of a
# random ranking of 20 has std 0.23); fixed before measuring. On the dev part of
# bench/series_mode.py a random prior (record -0.02) cost blend -0.050 / -0.011 rho at k = 5 /
# 10 against the GP alone; the model (0.36) and the heavy-atom prior (0.32) gained.
RECORD_FLOOR = 0.1
# From RECORD_TRUST on (FEP's level: 0.63 on the dev part) blend mixes anchoring in always,
# unguarded: there FEP gained +0.302 / +0.210 / +0.135 over the GP alone at k = 5 / 10 / 20
# against the guarded blend's +0.193 / +0.131 / +0.080 (bench/results/series_mode_guard_*.txt),
# while the heavy-atom prior, record 0.32, lost with it at k = 10 and 20 (-0.001, -0.015
# against +0.015, +0.003). Between the two the guards stand.
RECORD_TRUST = 0.5


@dataclass(frozen=True)
class MethodChoice:
    """What a prior's record earns it: a method of :data:`METHODS`, its keyword arguments, and
    why, for the log."""

    method: str
    options: dict
    why: str


def method_for_record(record: float | None) -> MethodChoice:
    """Series mode's method for a prior with ``record`` (its mean per-series rho on series of
    unseen protein families; None: unknown): ``gp_alone`` where the record is unknown or below
    :data:`RECORD_FLOOR`, ``blend`` with its guards in between, ``blend`` mixing always from
    :data:`RECORD_TRUST` on."""
    if record is None:
        return MethodChoice("gp_alone", {}, "the model has no record of ranking series of "
                            "protein families it never saw (no validation series under a family "
                            "or target split), so it is not used")
    if not math.isfinite(record):
        raise InputError(f"a prior's record must be finite (got {record})")
    known = f"the model's record on series of unseen protein families, mean rho {record:.2f},"
    if record < RECORD_FLOOR:
        return MethodChoice("gp_alone", {}, f"{known} is below {RECORD_FLOOR}: not told from a "
                            "useless one, so it is not used")
    if record < RECORD_TRUST:
        return MethodChoice("blend", {}, f"{known} earns it the guarded blend: mixed in where it "
                            "predicts the measured ligands no worse than the GP")
    return MethodChoice("blend", {"guard": math.inf, "independent": True},
                        f"{known} is at FEP's level (at least {RECORD_TRUST}): anchoring on it is "
                        "mixed in always, an estimate independent of the GP's")


# The fewest degrees of freedom of the Student-t predictive: below 3 a t has no finite std, and
# k = 2 or 3 measured ligands would get one. A choice, not a measurement (no such k is reported).
MIN_PREDICTIVE_DOF = 3
# Marginal-likelihood optimizer restarts. 2 and 0 gave the same figures on the dev part of
# bench/series_mode.py; 0 is 2.5 times faster.
GP_RESTARTS = 0


@dataclass(frozen=True)
class SeriesPrediction:
    """Predictions for the queries of one series, in pK units.

    Attributes:
        mean: predicted pK per query.
        std: standard deviation of a new measurement of each query (assay noise included).
        prior_scale: ``s`` of ``c + s * prior`` in pK per prior unit, where the method fits or
            fixes one (``None`` for ``gp_alone``).
        noise_std: the fitted noise std (pK) of a GP method, else ``None``.
        log_evidence: the GP's log marginal likelihood of the measured pK, else ``None``.
        dof: the degrees of freedom of the Student-t whose std ``std`` is; ``None`` for a
            Gaussian (k < 2, where nothing is fitted).
    """

    mean: np.ndarray
    std: np.ndarray
    prior_scale: float | None = None
    noise_std: float | None = None
    log_evidence: float | None = None
    dof: int | None = None

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The central ``level`` (e.g. 0.68, 0.95) interval of each query's predictive: the
        Student-t's of ``dof`` degrees of freedom (``std`` is its std, not its scale), a
        Gaussian's where ``dof`` is None. A t's ±1 std holds more than 68 % (0.77 at 4
        degrees of freedom), so the 68 % interval is narrower than ±1 std; its 95 % interval is
        about ±2 std."""
        if not 0 < level < 1:
            raise InputError(f"an interval's level must lie in (0, 1) (got {level})")
        tail = (1 + level) / 2
        if self.dof is None:
            half = norm.ppf(tail) * self.std
        else:
            half = student_t.ppf(tail, self.dof) * self.std / student_t_std(self.dof)
        return self.mean - half, self.mean + half


def predictive_dof(k: int) -> int:
    """Degrees of freedom of the Student-t predictive from k measured ligands: k - 1, at least
    :data:`MIN_PREDICTIVE_DOF`.

    Why a Student-t: the methods fit the series' amplitude and noise on k values and plug them in,
    as if known. Integrating an unknown overall scale out (a Jeffreys prior) turns a Gaussian
    predictive into a Student-t whose scale is the plug-in std (Shah, Wilson & Ghahramani,
    AISTATS 2014); one of the k values goes to the series' level, around which the GPs are
    fitted. On the dev part of bench/series_mode.py (bench/series_calibration.py, the model's
    out-of-fold prior, 84 series) the plug-in std held 0.62 / 0.88 of the errors within 1 / 2
    std at k = 5 (0.68 / 0.92 at k = 10): too narrow, with heavier tails than a Gaussian's. This
    std holds 0.77 / 0.95 (0.74 / 0.94), what the t expects at k = 5 (0.71 / 0.95 at k = 10);
    dof = k (a factor 1.29 at k = 5) would hold about 0.74 / 0.93 there.
    """
    return max(k - 1, MIN_PREDICTIVE_DOF)


def student_t_std(dof: int) -> float:
    """The std of a Student-t with ``dof`` (> 2) degrees of freedom, in units of its scale."""
    return math.sqrt(dof / (dof - 2))


def _student_t(method: Callable[..., SeriesPrediction]) -> Callable[..., SeriesPrediction]:
    """``method`` with the std of its k >= 2 predictions widened from the plug-in Gaussian's to
    the Student-t's of :func:`predictive_dof` (the plug-in std as its scale, times
    :func:`student_t_std`); the means are untouched, so no ranking changes."""

    @functools.wraps(method)
    def predict(measured_fps, measured_pk, query_fps, *args, **kwargs) -> SeriesPrediction:
        result = method(measured_fps, measured_pk, query_fps, *args, **kwargs)
        k = len(measured_pk)
        if k < 2:
            return result
        dof = predictive_dof(k)
        return replace(result, std=result.std * student_t_std(dof), dof=dof)

    return predict


def _as_mol(ligand: Chem.Mol | str) -> Chem.Mol:
    if isinstance(ligand, Chem.Mol):
        return ligand
    mol = Chem.MolFromSmiles(ligand)
    if mol is None:
        raise InputError(f"SMILES {ligand!r}: RDKit cannot parse it into a valid molecule")
    return mol


def count_fingerprints(ligands: Sequence[Chem.Mol | str], radius: int = FINGERPRINT_RADIUS,
                       bits: int = FINGERPRINT_BITS) -> np.ndarray:
    """Morgan count fingerprints, one row per ligand (RDKit mols or SMILES), as float64.

    Counts rather than bits: in a congeneric series most members share the same substructures,
    and how many times a group occurs is often what distinguishes them.
    """
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    rows = [generator.GetCountFingerprintAsNumPy(_as_mol(ligand)) for ligand in ligands]
    return np.array(rows, dtype=float).reshape(len(rows), bits)


def heavy_atoms(ligands: Sequence[Chem.Mol | str]) -> np.ndarray:
    """Heavy-atom count of each ligand (explicit hydrogens in the input are not counted)."""
    return np.array([sum(atom.GetAtomicNum() > 1 for atom in _as_mol(ligand).GetAtoms())
                     for ligand in ligands], dtype=int)


def tanimoto(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinMax (Tanimoto for counts) similarity of each row of ``a`` to each row of ``b``.

    ``sum(min) / sum(max)``; it is a positive semi-definite kernel on non-negative vectors, 1 for
    identical rows. Two all-zero rows count as identical, an all-zero and another as 0.
    """
    used = a.any(axis=0) | b.any(axis=0)  # a series touches a few hundred of the 2048 bits
    a, b = a[:, used], b[:, used]
    minimum = np.minimum(a[:, None, :], b[None, :, :]).sum(axis=2)
    maximum = a.sum(axis=1)[:, None] + b.sum(axis=1)[None, :] - minimum
    return np.divide(minimum, maximum, out=np.ones_like(minimum), where=maximum > 0)


class _ColumnKernel(Kernel):
    """A kernel without hyperparameters of its own on some columns of the design matrix (column
    0 holds the standardized prior, the rest the fingerprint): scale it with a ConstantKernel.
    scikit-learn kernels see the whole input row, so each picks its part."""

    @abstractmethod
    def _pair(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The kernel matrix between the rows of ``a`` and of ``b``."""

    def __call__(self, X, Y=None, eval_gradient=False):
        if Y is not None and eval_gradient:
            raise ValueError(f"{type(self).__name__}: a gradient needs Y = None")
        X = np.atleast_2d(X)
        K = self._pair(X, X if Y is None else np.atleast_2d(Y))
        if eval_gradient:
            return K, np.empty((X.shape[0], X.shape[0], 0))
        return K

    def diag(self, X):
        return np.diag(self._pair(X, X)).copy()

    def is_stationary(self):
        return False


class TanimotoKernel(_ColumnKernel):
    """MinMax similarity of the fingerprint, columns ``first_column:`` of the design matrix."""

    def __init__(self, first_column: int = 1):
        self.first_column = first_column

    def _pair(self, a, b):
        return tanimoto(a[:, self.first_column:], b[:, self.first_column:])


class PriorKernel(_ColumnKernel):
    """``prior(x) * prior(x')``, the prior in column ``column``: the covariance of
    ``s * prior`` with ``s`` drawn from N(0, v); ``v`` (the ConstantKernel in front), fitted,
    says how much of the series the prior explains."""

    def __init__(self, column: int = 0):
        self.column = column

    def _pair(self, a, b):
        return np.outer(a[:, self.column], b[:, self.column])


@dataclass(frozen=True)
class _Inputs:
    """Validated inputs of one series; priors are ``None`` when the caller gave none."""

    measured_fps: np.ndarray
    measured_pk: np.ndarray
    query_fps: np.ndarray
    measured_prior: np.ndarray | None
    query_prior: np.ndarray | None


def _finite(name: str, values, length: int | None = None, ndim: int = 1) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != ndim:
        raise InputError(f"{name}: must be {ndim}-dimensional (got shape {array.shape})")
    if length is not None and len(array) != length:
        raise InputError(f"{name}: must have one entry per ligand, {length} (got {len(array)})")
    if not np.isfinite(array).all():
        raise InputError(f"{name}: every value must be finite (got "
                         f"{int((~np.isfinite(array)).sum())} NaN or infinite)")
    return array


def check_inputs(measured_fps, measured_pk, query_fps, measured_prior=None,
                 query_prior=None) -> _Inputs:
    """The inputs as float arrays, or :class:`InputError` naming the argument and the rule
    (shapes, lengths, finite values, non-negative counts, both priors or neither)."""
    measured_fps = _finite("measured fingerprints", measured_fps, ndim=2)
    query_fps = _finite("query fingerprints", query_fps, ndim=2)
    if measured_fps.shape[1] != query_fps.shape[1]:
        raise InputError(f"query fingerprints: must have as many bits as the measured ones, "
                         f"{measured_fps.shape[1]} (got {query_fps.shape[1]})")
    if (measured_fps < 0).any() or (query_fps < 0).any():
        raise InputError("fingerprints: counts must be non-negative")
    measured_pk = _finite("measured pK", measured_pk, len(measured_fps))
    if (measured_prior is None) != (query_prior is None):
        raise InputError("prior: give it for both the measured and the query ligands, or for "
                         "neither")
    if measured_prior is not None:
        measured_prior = _finite("measured prior", measured_prior, len(measured_fps))
        query_prior = _finite("query prior", query_prior, len(query_fps))
    return _Inputs(measured_fps, measured_pk, query_fps, measured_prior, query_prior)


def _few(inputs: _Inputs, method: str) -> SeriesPrediction | None:
    """k = 0: the prior alone; k = 1: the prior shifted through the one measurement (a constant
    without a prior); both with DEFAULT_STD. ``None`` where there is enough to fit."""
    k, m = len(inputs.measured_pk), len(inputs.query_fps)
    if k >= 2:
        return None
    if inputs.query_prior is None:
        if k == 0:
            raise InputError(f"{method}: with no measured ligand it needs a prior to predict")
        return SeriesPrediction(np.full(m, inputs.measured_pk[0]), np.full(m, DEFAULT_STD))
    offset = inputs.measured_pk[0] - inputs.measured_prior[0] if k == 1 else 0.0
    return SeriesPrediction(inputs.query_prior + offset, np.full(m, DEFAULT_STD), 1.0)


def _require_prior(inputs: _Inputs, method: str) -> None:
    if inputs.query_prior is None:
        raise InputError(f"{method}: needs a prior for the measured and the query ligands")


def _with_prior(method: str, measured_fps, measured_pk, query_fps, measured_prior,
                query_prior) -> tuple[_Inputs, SeriesPrediction | None]:
    """The checked inputs of a method that needs a prior, and its answer where k < 2."""
    inputs = check_inputs(measured_fps, measured_pk, query_fps, measured_prior, query_prior)
    _require_prior(inputs, method)
    return inputs, _few(inputs, method)


def _fit_gp(design: np.ndarray, target: np.ndarray, with_prior: bool) -> GaussianProcessRegressor:
    """A GP on ``target`` (centred by the caller) with kernel
    ``a * Tanimoto + DEFAULT_STD^2 [+ v * prior prior'] + noise``, noise std >= ASSAY_NOISE_STD;
    a, v and the noise maximize the marginal likelihood.

    The fixed constant term is the uncertainty of the series' level: the centre is estimated
    from the k measured ligands, and without it the std would treat it as known (on the dev
    part of bench/series_mode.py it raised the GP's share of queries within 1 std at k = 5 from
    0.57 to 0.64; the goal is 0.68).
    """
    kernel = ConstantKernel(1.0, (1e-3, 1e2)) * TanimotoKernel() + ConstantKernel(
        DEFAULT_STD**2, "fixed")
    if with_prior:
        kernel = kernel + ConstantKernel(0.1, (1e-4, 1e2)) * PriorKernel()
    kernel = kernel + WhiteKernel(0.25, (ASSAY_NOISE_STD**2, 1e1))
    gp = GaussianProcessRegressor(kernel, alpha=1e-8, n_restarts_optimizer=GP_RESTARTS,
                                  random_state=0)
    with warnings.catch_warnings():
        # A hyperparameter at its bound is an answer here, not a failure: the noise at the assay
        # floor, or the prior's variance at ~0 for a prior the data do not support.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gp.fit(design, target)


def _design(fps: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    column = np.zeros(len(fps)) if prior is None else prior
    return np.column_stack([column, fps])


def _noise_std(gp: GaussianProcessRegressor) -> float:
    return float(np.sqrt(gp.kernel_.k2.noise_level))


def _gp_around_mean(inputs: _Inputs, offset_measured: np.ndarray
                    ) -> tuple[GaussianProcessRegressor, float]:
    """The GP alone fitted on ``pK - offset`` minus its mean, and that mean."""
    residual = inputs.measured_pk - offset_measured
    centre = float(residual.mean())
    return _fit_gp(_design(inputs.measured_fps, None), residual - centre, with_prior=False), centre


def _gp_predict(inputs: _Inputs, offset_measured: np.ndarray, offset_query: np.ndarray,
                prior_scale: float | None,
                fitted: tuple[GaussianProcessRegressor, float] | None = None
                ) -> SeriesPrediction:
    """The GP alone on ``pK - offset``, around its mean, added back to the query offsets
    (``fitted``: that GP and mean, where the caller has them already)."""
    gp, centre = fitted or _gp_around_mean(inputs, offset_measured)
    mean, std = gp.predict(_design(inputs.query_fps, None), return_std=True)
    return SeriesPrediction(mean + centre + offset_query, std, prior_scale, _noise_std(gp),
                            gp.log_marginal_likelihood_value_)


@_student_t
def gp_alone(measured_fps, measured_pk, query_fps, measured_prior=None,
             query_prior=None) -> SeriesPrediction:
    """Tanimoto GP around the measured mean; a prior, if given, is ignored (k >= 2).

    Args:
        measured_fps: (k, bits) count fingerprints of the measured ligands.
        measured_pk: (k,) their measured pK.
        query_fps: (m, bits) count fingerprints of the ligands to predict.
        measured_prior, query_prior: (k,) and (m,) prior pK; used only when k < 2.
    """
    inputs = check_inputs(measured_fps, measured_pk, query_fps, measured_prior, query_prior)
    few = _few(inputs, "gp_alone")
    if few is not None:
        return few
    k, m = len(inputs.measured_pk), len(inputs.query_fps)
    return _gp_predict(inputs, np.zeros(k), np.zeros(m), None)


@_student_t
def gp_prior(measured_fps, measured_pk, query_fps, measured_prior,
             query_prior) -> SeriesPrediction:
    """Tanimoto GP around ``c + s * prior``, used only where the measured ligands support it.

    The prior is standardized over all the series' ligands (measured and query: no label is
    used), ``s`` gets a N(0, v) prior and v is fitted with the kernel's hyperparameters; the
    query std includes the uncertainty of ``s``. The prior is dropped (the result is
    ``gp_alone``'s, ``prior_scale = 0``) unless the posterior mean of ``s`` is positive and the
    log marginal likelihood gains more than :data:`EVIDENCE_MARGIN` over the GP alone: the
    ranking of the queries is scale-free, so even a small ``s`` times a useless prior reorders
    them; shrinking ``s`` alone does not protect. Arguments as :func:`gp_alone`; priors required.
    """
    inputs, few = _with_prior("gp_prior", measured_fps, measured_pk, query_fps,
                              measured_prior, query_prior)
    if few is not None:
        return few
    k, m = len(inputs.measured_pk), len(inputs.query_fps)
    alone = _gp_predict(inputs, np.zeros(k), np.zeros(m), 0.0)
    every = np.concatenate([inputs.measured_prior, inputs.query_prior])
    spread = every.std()
    if spread == 0:  # a constant prior ranks nothing
        return alone
    centre_prior = inputs.measured_prior.mean()
    scaled_measured = (inputs.measured_prior - centre_prior) / spread
    scaled_query = (inputs.query_prior - centre_prior) / spread
    centre = inputs.measured_pk.mean()
    gp = _fit_gp(_design(inputs.measured_fps, scaled_measured), inputs.measured_pk - centre,
                 with_prior=True)
    # Posterior mean of s: v * prior' K^-1 y, with alpha_ = K^-1 y stored by the fit.
    prior_variance = gp.kernel_.k1.k2.k1.constant_value
    scale = prior_variance * float(scaled_measured @ gp.alpha_)
    gain = gp.log_marginal_likelihood_value_ - alone.log_evidence
    if scale <= 0 or gain <= EVIDENCE_MARGIN:
        return alone
    mean, std = gp.predict(_design(inputs.query_fps, scaled_query), return_std=True)
    return SeriesPrediction(mean + centre, std, scale / spread, _noise_std(gp),
                            gp.log_marginal_likelihood_value_)


@_student_t
def gp_anchored(measured_fps, measured_pk, query_fps, measured_prior,
                query_prior) -> SeriesPrediction:
    """Tanimoto GP on the prior's residuals ``pK - prior`` (s = 1): the prior is taken at its
    own scale and the GP learns the offset and how it varies over the series. Arguments as
    :func:`gp_alone`; priors required."""
    inputs, few = _with_prior("gp_anchored", measured_fps, measured_pk, query_fps,
                              measured_prior, query_prior)
    if few is not None:
        return few
    return _gp_predict(inputs, inputs.measured_prior, inputs.query_prior, 1.0)


def _anchor_offsets(query_fps: np.ndarray, anchor_fps: np.ndarray, anchor_offsets: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the similarity-weighted mean of the anchors' offsets ``pK - prior`` and the
    anchored std (see :func:`anchored`)."""
    weights = tanimoto(query_fps, anchor_fps) ** ANCHOR_POWER
    total = weights.sum(axis=1)
    # A query sharing no bit with any anchor gets equal weights rather than 0 / 0.
    weights[total == 0] = 1.0
    total = weights.sum(axis=1)
    offset = weights @ anchor_offsets / total
    pseudo = ANCHOR_PSEUDO_SIMILARITY**ANCHOR_POWER
    spread = (weights * (anchor_offsets[None, :] - offset[:, None]) ** 2).sum(axis=1)
    variance = (spread + pseudo * DEFAULT_STD**2) / (total + pseudo)
    effective = total**2 / (weights**2).sum(axis=1)
    return offset, np.maximum(np.sqrt(variance * (1 + 1 / effective)), ASSAY_NOISE_STD)


@_student_t
def anchored(measured_fps, measured_pk, query_fps, measured_prior,
             query_prior) -> SeriesPrediction:
    """Reference anchoring: each measured r predicts ``pK(r) + prior(q) - prior(r)``.

    Anchors are averaged with weights ``similarity(q, r) ** ANCHOR_POWER``. The std is the
    weighted spread of the anchors' offsets, blended with one pseudo-anchor of DEFAULT_STD at
    similarity ANCHOR_PSEUDO_SIMILARITY (a query far from all anchors is uncertain), inflated by
    ``1 + 1 / effective number of anchors`` in variance, floored at ASSAY_NOISE_STD. Arguments
    as :func:`gp_alone`; priors required.
    """
    inputs, few = _with_prior("anchored", measured_fps, measured_pk, query_fps,
                              measured_prior, query_prior)
    if few is not None:
        return few
    offset, std = _anchor_offsets(inputs.query_fps, inputs.measured_fps,
                                  inputs.measured_pk - inputs.measured_prior)
    return SeriesPrediction(inputs.query_prior + offset, std, 1.0)


def _anchored_loo_errors(inputs: _Inputs) -> np.ndarray:
    """Each measured ligand's error when the others anchor it (leave one out)."""
    offsets = inputs.measured_pk - inputs.measured_prior
    errors = np.empty(len(offsets))
    for left_out in range(len(offsets)):
        others = np.arange(len(offsets)) != left_out
        offset, _ = _anchor_offsets(inputs.measured_fps[left_out:left_out + 1],
                                    inputs.measured_fps[others], offsets[others])
        errors[left_out] = offsets[left_out] - offset[0]
    return errors


def _gp_loo_errors(gp: GaussianProcessRegressor) -> np.ndarray:
    """Each training point's leave-one-out error under a fitted GP, its hyperparameters fixed:
    ``[K^-1 y]_i / [K^-1]_ii`` (Rasmussen & Williams, eq. 5.12), no refit per point."""
    inverse = cho_solve((gp.L_, True), np.eye(len(gp.alpha_)))
    return gp.alpha_ / np.diag(inverse)


def _error_ratio(inputs: _Inputs, gp: GaussianProcessRegressor) -> float:
    return float((_anchored_loo_errors(inputs) ** 2).sum() / (_gp_loo_errors(gp) ** 2).sum())


def anchoring_error_ratio(measured_fps, measured_pk, measured_prior) -> float:
    """How much worse anchoring predicts the measured ligands than the GP alone: the ratio of
    their leave-one-out sums of squared errors (each measured ligand predicted from the others;
    below 1, anchoring on the prior did better). Needs k >= 2; inputs as :func:`gp_alone`'s."""
    inputs = check_inputs(measured_fps, measured_pk, measured_fps, measured_prior,
                          measured_prior)
    if len(inputs.measured_pk) < 2:
        raise InputError(f"anchoring_error_ratio: needs at least 2 measured ligands (got "
                         f"{len(inputs.measured_pk)})")
    gp, _ = _gp_around_mean(inputs, np.zeros(len(inputs.measured_pk)))
    return _error_ratio(inputs, gp)


@_student_t
def blend(measured_fps, measured_pk, query_fps, measured_prior, query_prior,
          guard: float = BLEND_GUARD,
          scaled_guard: float = SCALED_BLEND_GUARD,
          independent: bool = False) -> SeriesPrediction:
    """The equal mixture of :func:`anchored` and :func:`gp_alone`, where anchoring earns it.

    The two read different evidence: anchoring trusts the prior's differences between close
    analogues, the GP how the measured pK vary over the fingerprint. The mixture is used only if
    :func:`anchoring_error_ratio` is at most ``guard``, or else, with the prior's differences
    shrunk by :func:`prior_slope` (a prior right in order, wrong in scale), at most
    ``scaled_guard``; otherwise the result is ``gp_alone``'s (``prior_scale = 0``): a prior the
    measured ligands contradict is not allowed to reorder the series (``guard=math.inf`` mixes
    always, unscaled). ``prior_scale`` is the prior's weight in the mean: 0.5 times the slope
    used. The mixture's mean is the mean of the two means,
    its std that of an equal mixture of the two Gaussians (their variances averaged plus the
    spread of the two means), so where they disagree the std says so. With ``independent``
    (what :func:`method_for_record` gives a prior it trusts, beside ``guard=math.inf``) the two
    are taken as independent estimates: the variance of their mean, a quarter of the sum of
    theirs, plus the spread. On the dev part (bench/series_calibration.py) FEP, trusted, had
    0.85 / 0.99 of the errors inside the mixture's 68 / 95 % intervals at k = 5 (0.86 / 0.99 at
    k = 10, 20) and 0.76 / 0.97 (0.76 / 0.96) inside these; the guarded blend with the model's
    prior had 0.68 / 0.94, 0.70 / 0.94, 0.73 / 0.95 with the mixture and 0.60 / 0.91, 0.64 /
    0.90, 0.68 / 0.92 with independence: a prior the guard has to check does not err
    independently of the GP. Other arguments as :func:`gp_alone`; priors required.
    """
    inputs, few = _with_prior("blend", measured_fps, measured_pk, query_fps,
                              measured_prior, query_prior)
    if few is not None:
        return few
    k, m = len(inputs.measured_pk), len(inputs.query_fps)
    fitted = _gp_around_mean(inputs, np.zeros(k))
    alone = _gp_predict(inputs, np.zeros(k), np.zeros(m), 0.0, fitted)
    scale = 1.0
    if not math.isinf(guard) and _error_ratio(inputs, fitted[0]) > guard:
        scale = prior_slope(inputs.measured_prior, inputs.measured_pk)
        if scale == 0:
            return alone
        inputs = _scaled(inputs, scale)
        if _error_ratio(inputs, fitted[0]) > scaled_guard:
            return alone
    offset, anchored_std = _anchor_offsets(inputs.query_fps, inputs.measured_fps,
                                           inputs.measured_pk - inputs.measured_prior)
    anchored_mean = inputs.query_prior + offset
    mean = (anchored_mean + alone.mean) / 2
    variance = (anchored_std**2 + alone.std**2) / (4 if independent else 2) \
        + ((anchored_mean - alone.mean) / 2) ** 2
    return SeriesPrediction(mean, np.sqrt(variance), 0.5 * scale, alone.noise_std,
                            alone.log_evidence)


def prior_slope(measured_prior: np.ndarray, measured_pk: np.ndarray) -> float:
    """The least-squares slope of the measured pK on the prior (both centred), clipped to
    [0, 1]: how far the prior's differences hold at their own scale on the measured ligands."""
    prior = measured_prior - measured_prior.mean()
    spread = float(prior @ prior)
    if spread == 0:
        return 0.0
    return float(np.clip(prior @ (measured_pk - measured_pk.mean()) / spread, 0.0, 1.0))


def _scaled(inputs: _Inputs, scale: float) -> _Inputs:
    """The inputs with the prior multiplied by ``scale``."""
    return replace(inputs, measured_prior=scale * inputs.measured_prior,
                   query_prior=scale * inputs.query_prior)


Method = Callable[..., SeriesPrediction]
METHODS: dict[str, Method] = {"gp_alone": gp_alone, "gp_prior": gp_prior,
                              "anchored": anchored, "gp_anchored": gp_anchored, "blend": blend}


def _ucb(mean: np.ndarray, std: np.ndarray, best_so_far: float, kappa: float) -> np.ndarray:
    return mean + kappa * std


def _expected_improvement(mean: np.ndarray, std: np.ndarray, best_so_far: float,
                          kappa: float) -> np.ndarray:
    z = (mean - best_so_far) / std
    return (mean - best_so_far) * norm.cdf(z) + std * norm.pdf(z)


ACQUISITIONS = {"ucb": _ucb, "ei": _expected_improvement}


def suggest(mean, std, n: int, best_so_far: float, method: str = "ucb",
            kappa: float = 1.0) -> np.ndarray:
    """Indices of the ``n`` queries to make next, best first.

    Args:
        mean, std: predicted pK and its std per query (std > 0).
        n: how many to make (1 <= n <= number of queries).
        best_so_far: the best measured pK (used by expected improvement).
        method: ``ucb`` (mean + kappa * std) or ``ei`` (expected improvement over best_so_far).
        kappa: UCB's exploration weight in stds.

    The top ``n`` scores are taken as they are: a batch gets no diversity penalty.
    """
    if method not in ACQUISITIONS:
        raise InputError(f"acquisition {method!r}: must be one of {', '.join(ACQUISITIONS)}")
    mean = _finite("mean", mean)
    std = _finite("std", std, len(mean))
    if (std <= 0).any():
        raise InputError("std: every value must be > 0")
    if not 1 <= n <= len(mean):
        raise InputError(f"n: must be between 1 and the number of queries, {len(mean)} (got {n})")
    if not np.isfinite(best_so_far):
        raise InputError(f"best_so_far: must be finite (got {best_so_far})")
    score = ACQUISITIONS[method](mean, std, float(best_so_far), kappa)
    return np.argsort(-score, kind="stable")[:n]
