"""Linear algebra shared by the baselines: CCA from covariances, half-quadratic weights, graph products.

numpy/scipy for the closed-form methods (float64), torch for what runs inside a model (DCCA).
Everything works on `[items, dim]` matrices and never forms an `items x items` matrix, so fitting
on tens of thousands of pairs stays within memory.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse
import torch


class SolverError(ValueError):
    """A linear system of a closed-form method could not be solved (e.g. degenerate features)."""


# --- torch (inside models) -------------------------------------------------------------------------

def inverse_sqrt_psd(s: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """`s^(-1/2)` of a symmetric positive (semi)definite matrix; eigenvalues below `eps` are clamped."""
    values, vectors = torch.linalg.eigh(s)
    return (vectors * values.clamp_min(eps).rsqrt()) @ vectors.T


def cca_projections(s11: torch.Tensor, s22: torch.Tensor, s12: torch.Tensor, k: int,
                    eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear CCA from (regularised) covariances: `(A1 [d1, k], A2 [d2, k], correlations [k])`.

    With `T = S11^-1/2 S12 S22^-1/2 = U diag(c) V^T`, the canonical directions are `S11^-1/2 U` and
    `S22^-1/2 V`; `x1 @ A1` and `x2 @ A2` (centred inputs) are then whitened and pairwise correlated
    by `c`, largest first. U and c come from the eigendecomposition of `T T^T` (symmetric
    eigensolvers are much faster than the SVD on this machine), `V = T^T U / c`.
    """
    w1, w2 = inverse_sqrt_psd(s11, eps), inverse_sqrt_psd(s22, eps)
    t = w1 @ s12 @ w2
    values, vectors = torch.linalg.eigh(t @ t.T)
    u = vectors.flip(-1)[:, :k]
    c = values.flip(-1)[:k].clamp_min(0).sqrt()
    v = (t.T @ u) / c.clamp_min(eps)
    return w1 @ u, w2 @ v, c


def thin_svd(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(P [n, k], s [k])` of a tall `m [n, k]` (n >> k) from the eigendecomposition of `m^T m`
    (orders of magnitude faster here than LAPACK's SVD of the tall matrix). Directions with a
    numerically zero singular value are dropped."""
    values, vectors = np.linalg.eigh(m.T @ m)
    s = np.sqrt(np.clip(values, 0.0, None))
    keep = s > s.max() * 1e-10 if s.size and s.max() > 0 else np.zeros(len(s), bool)
    return (m @ vectors[:, keep]) / s[keep], s[keep]


# --- numpy (closed-form solvers) -------------------------------------------------------------------

def standardize_stats(x: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and standard deviation (ddof 1, as scikit-learn); constant columns get scale 1."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise SolverError(f"{what}: need a 2-D array with at least 2 rows to standardise, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise SolverError(f"{what}: contains NaN or inf")
    mean = x.mean(axis=0)
    std = x.std(axis=0, ddof=1)
    return mean, np.where(std > 0, std, 1.0)


def l21_weights(w: np.ndarray, rel_eps: float) -> np.ndarray:
    """Half-quadratic weights of `||W||_21 = sum_i ||w_i||`: `1 / (2 sqrt(||w_i||^2 + eps))` per row.

    With R = diag(weights), `tr(W^T R W)` has the gradient `2 R W`, the l21 gradient at W (up to the
    smoothing eps = `rel_eps` x the mean squared row norm, which keeps zero rows finite at any scale).
    """
    sq = (w * w).sum(axis=1)
    eps = rel_eps * float(sq.mean()) + 1e-30
    return 0.5 / np.sqrt(sq + eps)


def trace_norm_quadratic(x: np.ndarray, m: np.ndarray, rel_eps: float,
                         gram: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """`(X^T D X, ||M||_*)` for the half-quadratic weight `D = 1/2 (M M^T + eps I)^(-1/2)` of `||M||_*`.

    `x` is `[n, d]`, `m` is `[n, k]` with k << n; eps = `rel_eps` x the mean squared singular value.
    With `M = P diag(s) Q^T` (thin SVD), `(M M^T + eps I)^(-1/2) = eps^(-1/2) I +
    P diag((s^2 + eps)^(-1/2) - eps^(-1/2)) P^T`, so the `n x n` matrix D is never formed.
    `tr(M^T D M)` has the gradient `2 D M`, the (smoothed) trace-norm gradient. `gram` is `X^T X`
    when the caller has it.
    """
    p, s = thin_svd(m)
    eps = rel_eps * float((s * s).mean()) + 1e-30 if s.size else 1.0
    xp = x.T @ p                                          # [d, k]
    shrink = 1.0 / np.sqrt(s * s + eps) - 1.0 / np.sqrt(eps)
    gram = x.T @ x if gram is None else gram
    return 0.5 * (gram / np.sqrt(eps) + (xp * shrink) @ xp.T), float(s.sum())


def solve_spd(a: np.ndarray, b: np.ndarray, what: str) -> np.ndarray:
    """Solve `a x = b` for a symmetric positive definite `a` (Cholesky), else by least squares."""
    a = 0.5 * (a + a.T)
    try:
        return scipy.linalg.solve(a, b, assume_a="pos", check_finite=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError, ValueError):
        pass
    x, *_ = scipy.linalg.lstsq(a, b, check_finite=False)
    if not np.isfinite(x).all():
        raise SolverError(f"{what}: the linear system has no finite solution (degenerate features?)")
    return x


def knn_graph(x: np.ndarray, k: int, chunk: int = 2048, heat_t: float | None = None) -> scipy.sparse.csr_matrix:
    """Symmetric k-nearest-neighbour graph (Euclidean, self excluded): `i~j` if either is among the
    other's k nearest, weight 1, or the heat kernel `exp(-d_ij / heat_t)` of the Euclidean distance when
    `heat_t` is given (JFSSL's public port). Distances are computed in row chunks; memory is `chunk x n`."""
    n = x.shape[0]
    k = min(k, n - 1)
    if k < 1:
        return scipy.sparse.csr_matrix((n, n))
    sq = (x * x).sum(axis=1)
    cols = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float64)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        d = sq[rows, None] - 2.0 * x[rows] @ x.T + sq[None, :]
        d[np.arange(len(rows)), rows] = np.inf
        cols[rows] = np.argpartition(d, k - 1, axis=1)[:, :k]
        dist[rows] = np.sqrt(np.maximum(np.take_along_axis(d, cols[rows], axis=1), 0.0))
    weights = np.ones(n * k) if heat_t is None else np.exp(-dist.ravel() / heat_t)
    g = scipy.sparse.csr_matrix((weights, (np.repeat(np.arange(n), k), cols.ravel())), shape=(n, n))
    g = g.maximum(g.T)
    return g.tocsr()


def label_graph_products(x1: np.ndarray, x2: np.ndarray, labels: np.ndarray,
                         counts_over_max: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For `W[i, j] = 1` when items i and j share a label: `(X1^T W X2 [d1, d2], rowsum W [n])`.
    `counts_over_max`: `W = Y Y^T / max(Y Y^T)` instead (Y the 0/1 label matrix: shared-label counts over
    their maximum, JFSSL's public port).

    W depends on the label sets only: with the distinct label sets as groups (E: item -> group, S: the
    group x group "share a label" matrix), `W = E S E^T`, so `X1^T W X2 = (E^T X1)^T S (E^T X2)` costs
    groups^2 instead of n^2. W is symmetric, so its column sums equal the row sums.
    """
    groups, group_of = np.unique(labels > 0, axis=0, return_inverse=True)
    group_of = group_of.ravel()
    share = groups.astype(np.float64) @ groups.T.astype(np.float64)
    if counts_over_max:
        share = share / share.max() if share.max() > 0 else share
    else:
        share = (share > 0).astype(np.float64)
    n = len(group_of)
    members = scipy.sparse.csr_matrix((np.ones(n), (group_of, np.arange(n))), shape=(len(groups), n))  # E^T
    counts = np.asarray(members.sum(axis=1)).ravel()
    return (members @ x1).T @ (share @ (members @ x2)), (share @ counts)[group_of]
