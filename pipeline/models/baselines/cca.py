"""CCA (Hotelling): the unsupervised linear baseline of papers/000 Table 1.

Solver "sklearn" (default): scikit-learn's `CCA` (NIPALS) finds the canonical directions, used as is.
Solver "svd": the closed-form CCA written here (`linalg.cca_projections`: eigendecomposition of the
whitened cross-covariance, with a small ridge); scikit-learn computes a pseudo-inverse and runs power
iterations for every component, which takes minutes on a few thousand pairs of 512-d features on a
2-core CPU, while the closed form takes seconds (bench/baselines_cca.py). The tests check that both
give the same canonical correlations. Written here in both cases: the inputs (pooled RoIs, caption
features), their standardisation (ddof 1, as scikit-learn's `scale=True`) and the export of the
directions as the model's projections, so that encoding runs in torch on batches like every method.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.cross_decomposition import CCA
from sklearn.exceptions import ConvergenceWarning

from pipeline.models.baselines.closed_form import ClosedFormMethod
from pipeline.models.baselines.linalg import SolverError, cca_projections


def closed_form_cca(x: np.ndarray, y: np.ndarray, k: int, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """Canonical directions `[d1, k]`, `[d2, k]` of centred `x [n, d1]`, `y [n, d2]` (ridge `reg`)."""
    t = torch.from_numpy
    n = x.shape[0]
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    s11 = xc.T @ xc / (n - 1) + reg * np.eye(x.shape[1])
    s22 = yc.T @ yc / (n - 1) + reg * np.eye(y.shape[1])
    a1, a2, _ = cca_projections(t(s11), t(s22), t(xc.T @ yc / (n - 1)), k)
    return a1.numpy(), a2.numpy()


class CCAMethod(ClosedFormMethod):
    needs_labels = False

    def output_dim(self) -> int:
        return int(self.settings["n_components"])

    def solve(self, image_x: np.ndarray, text_x: np.ndarray, labels: np.ndarray):
        s, k = self.settings, self.output_dim()
        limit = min(image_x.shape[0] - 1, image_x.shape[1], text_x.shape[1])
        if k > limit:
            raise SolverError(f"parameter 'methods.{self.method_name}.n_components' is {k}, but at most {limit} "
                              f"components exist (pairs {image_x.shape[0]}, image dim {image_x.shape[1]}, "
                              f"text dim {text_x.shape[1]})")
        not_converged = 0
        if s["solver"] == "svd":
            a1, a2 = closed_form_cca(image_x, text_x, k, float(s["reg"]))
        else:
            model = CCA(n_components=k, scale=False, max_iter=int(s["max_iter"]), tol=float(s["tol"]))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model.fit(image_x, text_x)
            not_converged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
            a1, a2 = model.x_rotations_, model.y_rotations_
        sx, sy = image_x @ a1, text_x @ a2
        corr = [float(np.corrcoef(sx[:, j], sy[:, j])[0, 1]) for j in range(k)]
        return a1, a2, {"objective": -float(np.sum(corr)), "first_correlation": corr[0],
                        "mean_correlation": float(np.mean(corr)), "components_not_converged": int(not_converged)}
