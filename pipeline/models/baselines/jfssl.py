"""JFSSL: joint feature selection and subspace learning (Wang, He, Wang, Wang, Tan; TPAMI 2016).

Both modalities are regressed onto the label matrix Y with l21 norms on the projections (feature
selection) and a multimodal graph regulariser that keeps neighbours close in the common space:

    f(U1, U2) = 1/(2n) sum_p ||X_p U_p - Y||^2 + lambda_l21 sum_p ||U_p||_21 + lambda_graph / n * tr(Z^T L Z),
    Z = [X_1 U_1; X_2 U_2] (the 2n projected items),  L = D - W  on the 2n items, W = [[W11, W12], [W21, W22]]

- inter-modality block W12[i, j] = 1 when image i and caption j share a label (the paper: the same
  class; multi-label data use "share at least one label", the project's convention);
- intra-modality blocks W11, W22: symmetric kNN graphs (`knn` neighbours) in each feature space.
Solved by half-quadratic minimisation: each iteration fixes the l21 weights and solves the joint
linear system in [U1; U2] exactly. The n x n blocks are never formed (kNN graphs are sparse, the
label block is built in row chunks). Written here (no library has JFSSL). Choices where the paper is
silent: each graph block is scaled to a mean degree of 1 and the losses are averaged over the n pairs
(so lambdas do not depend on n); Y is centred; start at the ridge solution; `hq_eps` smooths the weights.

`graph` selects the graph weights: "xmr" (above: 0/1 kNN and shares-a-label edges, each block rescaled to
mean degree 1) or "public_port" (the public JFSSL port that the Semantic Sharing baselines used: heat-kernel
weights exp(-d / `heat_t`) over the `knn` nearest neighbours within a modality, the cross block
Y Y^T / max(Y Y^T), no rescaling). Both use L = D - W with D the degrees over the whole 2n-item graph.
"""
from __future__ import annotations

import numpy as np

from pipeline.models.baselines.closed_form import ClosedFormMethod
from pipeline.models.baselines.linalg import knn_graph, l21_weights, label_graph_products, solve_spd


GRAPHS = ("xmr", "public_port")


def _block_scale(degrees: np.ndarray, rescale: bool) -> float:
    if not rescale:
        return 1.0
    return 1.0 / degrees.mean() if degrees.mean() > 0 else 0.0


def graph_quadratic(x1: np.ndarray, x2: np.ndarray, labels: np.ndarray, knn: int, graph: str = "xmr",
                    heat_t: float = 0.5) -> np.ndarray:
    """`X^T L X` of the multimodal graph for `X = blockdiag(X1, X2)`: `[d1 + d2, d1 + d2]`."""
    if graph not in GRAPHS:
        raise ValueError(f"jfssl: graph must be one of {', '.join(GRAPHS)}, got {graph!r}")
    port = graph == "public_port"
    d1 = x1.shape[1]
    blocks = []
    for x in (x1, x2):
        w = knn_graph(x.astype(np.float32), knn, heat_t=heat_t if port else None)
        deg = np.asarray(w.sum(axis=1)).ravel()
        scale = _block_scale(deg, not port)
        blocks.append((w * scale, deg * scale))
    cross, rows = label_graph_products(x1, x2, labels, counts_over_max=port)
    scale = _block_scale(rows, not port)
    out = np.zeros((d1 + x2.shape[1],) * 2)
    for (w, deg), x, extra, sl in ((blocks[0], x1, rows * scale, slice(0, d1)),
                                   (blocks[1], x2, rows * scale, slice(d1, None))):
        degree = deg + extra
        out[sl, sl] = (x * degree[:, None]).T @ x - x.T @ (w @ x)
    out[:d1, d1:] = -cross * scale
    out[d1:, :d1] = out[:d1, d1:].T
    return out


def fit_jfssl(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, labels: np.ndarray, *, lambda_l21: float,
              lambda_graph: float, knn: int, iterations: int, hq_eps: float, graph: str = "xmr",
              heat_t: float = 0.5):
    """`(U1, U2, objective per iteration)` for standardised inputs and centred targets `y`."""
    n, d1 = x1.shape
    a = graph_quadratic(x1, x2, labels, knn, graph, heat_t) if lambda_graph > 0 else 0.0
    gram = np.zeros((d1 + x2.shape[1],) * 2)
    gram[:d1, :d1], gram[d1:, d1:] = x1.T @ x1, x2.T @ x2
    target = np.vstack([x1.T @ y, x2.T @ y])
    base = gram + 2 * lambda_graph * a

    def objective(u: np.ndarray) -> float:
        fit = ((x1 @ u[:d1] - y) ** 2).sum() + ((x2 @ u[d1:] - y) ** 2).sum()
        l21 = np.sqrt((u * u).sum(axis=1)).sum()
        graph = np.trace(u.T @ a @ u) if lambda_graph > 0 else 0.0
        return float(fit / (2 * n) + lambda_l21 * l21 + lambda_graph * graph / n)

    u = solve_spd(base + 2 * n * max(lambda_l21, 1e-6) * np.eye(len(base)), target, "jfssl start")
    history = [objective(u)]
    for _ in range(iterations):
        weights = np.concatenate([l21_weights(u[:d1], hq_eps), l21_weights(u[d1:], hq_eps)])
        u = solve_spd(base + 2 * n * lambda_l21 * np.diag(weights), target, "jfssl update")
        history.append(objective(u))
    return u[:d1], u[d1:], history


class JFSSL(ClosedFormMethod):
    needs_labels = True
    label_regression = True

    def solve(self, image_x: np.ndarray, text_x: np.ndarray, labels: np.ndarray):
        s = self.settings
        y = labels - labels.mean(axis=0)
        u1, u2, history = fit_jfssl(image_x, text_x, y, labels, lambda_l21=float(s["lambda_l21"]),
                                    lambda_graph=float(s["lambda_graph"]), knn=int(s["knn"]),
                                    iterations=int(s["iterations"]), hq_eps=float(s["hq_eps"]),
                                    graph=s.get("graph") or "xmr", heat_t=float(s.get("heat_t", 0.5)))
        return u1, u2, {"objective": history[-1], "objective_start": history[0]}
