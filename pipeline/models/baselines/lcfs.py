"""LCFS: learning coupled feature spaces (Wang, He, Wang, Wang, Tan; ICCV 2013).

Coupled linear regression of both modalities onto the label matrix Y, with l21 norms on the two
projections (coupled feature selection) and a trace norm on the projected data `[X_a U, X_b V]` (low
rank couples the modalities), solved by half-quadratic (iteratively reweighted) minimisation:

    f(U, V) = 1/(2n) (||X_a U - Y||^2 + ||X_b V - Y||^2) + lambda_trace ||[X_a U, X_b V] / sqrt(n)||_*
              + lambda_l21 (||U||_21 + ||V||_21)

Each iteration fixes the half-quadratic weights R_a, R_b (l21) and D (trace norm) at the current point
and solves the two decoupled systems `(X^T X + 2 lambda_trace X^T D X + 2 n lambda_l21 R) W = X^T Y`.
Written here (no library has LCFS). Choices where the paper is silent or does not fit this setting:
- the losses are averaged over the n pairs and the trace norm taken of the data scaled by 1/sqrt(n),
  so the lambdas do not depend on the number of pairs (paper's lambdas = these x n and x sqrt(n));
- Y is centred (regression without intercept on standardised features), so the projections are
  centred label scores and the cosine between them a centred correlation;
- multi-label Y is the multi-hot matrix (the paper's Y is one-hot);
- the half-quadratic weights are smoothed by `hq_eps` relative to the current scale;
- the start point is the ridge solution (R = identity weights).
"""
from __future__ import annotations

import numpy as np

from pipeline.models.baselines.closed_form import ClosedFormMethod
from pipeline.models.baselines.linalg import l21_weights, solve_spd, thin_svd, trace_norm_quadratic


def lcfs_objective(xa: np.ndarray, xb: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray,
                   lambda_trace: float, lambda_l21: float) -> float:
    """The (unsmoothed) LCFS objective above, for monitoring and tests."""
    n = xa.shape[0]
    pa, pb = xa @ u, xb @ v
    fit = ((pa - y) ** 2).sum() + ((pb - y) ** 2).sum()
    trace = thin_svd(np.hstack([pa, pb]) / np.sqrt(n))[1].sum()
    l21 = np.sqrt((u * u).sum(axis=1)).sum() + np.sqrt((v * v).sum(axis=1)).sum()
    return float(fit / (2 * n) + lambda_trace * trace + lambda_l21 * l21)


def fit_lcfs(xa: np.ndarray, xb: np.ndarray, y: np.ndarray, *, lambda_trace: float, lambda_l21: float,
             iterations: int, hq_eps: float) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """`(U, V, objective per iteration)` for standardised `xa [n, da]`, `xb [n, db]`, centred `y [n, c]`."""
    n = xa.shape[0]
    grams = [xa.T @ xa, xb.T @ xb]
    targets = [xa.T @ y, xb.T @ y]
    weights = [np.eye(xa.shape[1]), np.eye(xb.shape[1])]
    u, v = (solve_spd(g + 2 * n * max(lambda_l21, 1e-6) * w, t, "lcfs start")
            for g, w, t in zip(grams, weights, targets))
    history = [lcfs_objective(xa, xb, y, u, v, lambda_trace, lambda_l21)]
    for _ in range(iterations):
        m = np.hstack([xa @ u, xb @ v]) / np.sqrt(n)
        new = []
        for x, g, t, w in ((xa, grams[0], targets[0], u), (xb, grams[1], targets[1], v)):  # decoupled given D
            system = g + 2 * n * lambda_l21 * np.diag(l21_weights(w, hq_eps))
            if lambda_trace > 0:
                system = system + 2 * lambda_trace * trace_norm_quadratic(x, m, hq_eps, gram=g)[0]
            new.append(solve_spd(system, t, "lcfs update"))
        u, v = new
        history.append(lcfs_objective(xa, xb, y, u, v, lambda_trace, lambda_l21))
    return u, v, history


class LCFS(ClosedFormMethod):
    needs_labels = True
    label_regression = True

    def solve(self, image_x: np.ndarray, text_x: np.ndarray, labels: np.ndarray):
        s = self.settings
        y = labels - labels.mean(axis=0)
        u, v, history = fit_lcfs(image_x, text_x, y, lambda_trace=float(s["lambda_trace"]),
                                 lambda_l21=float(s["lambda_l21"]), iterations=int(s["iterations"]),
                                 hq_eps=float(s["hq_eps"]))
        return u, v, {"objective": history[-1], "objective_start": history[0],
                      "image_features_kept": int((np.linalg.norm(u, axis=1) > 1e-3 * np.abs(u).max()).sum()),
                      "text_features_kept": int((np.linalg.norm(v, axis=1) > 1e-3 * np.abs(v).max()).sum())}
