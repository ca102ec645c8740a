"""The linear baselines: CCA against scikit-learn, LCFS / JFSSL solvers and their linear algebra."""
import numpy as np
import pytest
import scipy.sparse
import torch
from sklearn.cross_decomposition import CCA

from pipeline.models.baselines.cca import CCAMethod, closed_form_cca
from pipeline.models.baselines.closed_form import NotFittedError
from pipeline.models.baselines.jfssl import fit_jfssl, graph_quadratic
from pipeline.models.baselines.lcfs import LCFS, fit_lcfs, lcfs_objective
from pipeline.models.baselines.linalg import (SolverError, knn_graph, l21_weights, label_graph_products,
                                              thin_svd, trace_norm_quadratic)
from pipeline.contract.batches import DataInfo, ImageBatch, TextBatch
from pipeline.params import validate

INFO = DataInfo(feature_dim=6, num_regions=3, num_detector_classes=2, vocab_size=9, word_dim=4, num_labels=3)


def correlated_views(n=300, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    x = np.hstack([z, rng.normal(size=(n, 4))]) @ rng.normal(size=(6, 6)) + 3.0
    y = np.hstack([z + 0.3 * rng.normal(size=(n, 2)), rng.normal(size=(n, 2))]) @ rng.normal(size=(4, 4))
    return x, y


def settings(name, **kw):
    return validate({"methods": {name: kw}})["methods"][name]


def test_cca_method_reproduces_scikit_learn():
    x, y = correlated_views()
    method = CCAMethod("cca", settings("cca", n_components=2), INFO)
    method.fit_arrays(x, y, np.zeros((len(x), 3)))
    reference = CCA(n_components=2).fit(x, y)  # scale=True: the same standardisation
    rx, ry = reference.transform(x, y)
    got_x = method._project(torch.from_numpy(x), "image").numpy()
    got_y = method._project(torch.from_numpy(y), "text").numpy()
    np.testing.assert_allclose(got_x, rx, atol=1e-4)
    np.testing.assert_allclose(got_y, ry, atol=1e-4)


def test_closed_form_cca_matches_scikit_learn_correlations():
    x, y = correlated_views(seed=1)
    xs, ys = (x - x.mean(0)) / x.std(0, ddof=1), (y - y.mean(0)) / y.std(0, ddof=1)
    a1, a2 = closed_form_cca(xs, ys, 2, 0.0)
    rx, ry = CCA(n_components=2, tol=1e-10, max_iter=5000).fit(xs, ys).transform(xs, ys)
    for j in range(2):
        ours = np.corrcoef(xs @ a1[:, j], ys @ a2[:, j])[0, 1]
        theirs = np.corrcoef(rx[:, j], ry[:, j])[0, 1]
        assert ours == pytest.approx(theirs, abs=1e-6)
        assert abs(np.corrcoef(xs @ a1[:, j], rx[:, j])[0, 1]) == pytest.approx(1.0, abs=1e-5)  # same direction
    assert np.corrcoef(xs @ a1[:, 0], ys @ a2[:, 0])[0, 1] > 0.8  # the planted shared signal


def test_svd_solver_method_and_too_many_components():
    x, y = correlated_views(seed=2)
    method = CCAMethod("cca", settings("cca", n_components=2, solver="svd"), INFO)
    facts = method.fit_arrays(x, y, np.zeros((len(x), 3)))
    assert facts["first_correlation"] > 0.8 and facts["pairs"] == len(x)
    big = CCAMethod("cca", settings("cca", n_components=5), INFO)
    with pytest.raises(SolverError, match="n_components"):
        big.fit_arrays(x, y, np.zeros((len(x), 3)))


def test_closed_form_method_refuses_to_encode_before_fitting_and_checks_shapes():
    method = LCFS("lcfs", settings("lcfs"), INFO)
    images = ImageBatch(torch.arange(2), torch.randn(2, 3, 6), torch.rand(2, 3, 5), torch.zeros(2, 3, dtype=torch.long),
                        torch.zeros(2, 3))
    with pytest.raises(NotFittedError, match="not been fitted"):
        method.encode_images(images)
    with pytest.raises(SolverError, match="same rows"):
        method.fit_arrays(np.zeros((5, 6)), np.zeros((4, 4)), np.zeros((5, 3)))
    with pytest.raises(SolverError, match=r"\[pairs, 4\]"):
        method.fit_arrays(np.zeros((5, 6)), np.zeros((5, 7)), np.zeros((5, 3)))
    with pytest.raises(TypeError, match="closed form"):
        method.training_loss(None)


def test_caption_features_mean_and_bag_of_words():
    table = np.arange(9 * 4, dtype=np.float32).reshape(9, 4)
    ids = torch.tensor([[3, 4, 0], [5, 5, 5], [0, 0, 0]])
    texts = TextBatch(torch.arange(3), torch.arange(3), ids, torch.tensor([2, 3, 0]), torch.zeros(3, 3))
    mean = LCFS("lcfs", settings("lcfs"), INFO, word_vectors=table).text_inputs(texts)
    np.testing.assert_allclose(mean[0].numpy(), (table[3] + table[4]) / 2)
    np.testing.assert_allclose(mean[2].numpy(), 0)
    bow = LCFS("lcfs", settings("lcfs", text_features="bow"), INFO).text_inputs(texts)
    assert bow.shape == (3, 9)
    assert bow[0, 3] == 0.5 and bow[0, 4] == 0.5 and bow[0, 0] == 0 and bow[1, 5] == 1 and bow[2].sum() == 0


def test_l21_weights_by_hand():
    w = np.array([[3.0, 4.0], [0.0, 0.0]])
    weights = l21_weights(w, 0.0)
    assert weights[0] == pytest.approx(0.1)  # 1 / (2 * 5)
    assert np.isfinite(l21_weights(w, 1e-4)).all()


def test_thin_svd_and_trace_norm_quadratic_against_dense_computation():
    rng = np.random.default_rng(0)
    x, m = rng.normal(size=(40, 5)), rng.normal(size=(40, 3))
    p, s = thin_svd(m)
    np.testing.assert_allclose(np.sort(s), np.sort(np.linalg.svd(m, compute_uv=False)), rtol=1e-10)
    np.testing.assert_allclose(p.T @ p, np.eye(3), atol=1e-10)  # orthonormal basis ...
    np.testing.assert_allclose(p @ (p.T @ m), m, atol=1e-10)      # ... of m's column space
    eps_rel = 1e-3
    eps = eps_rel * np.mean(s ** 2)
    w, v = np.linalg.eigh(m @ m.T + eps * np.eye(40))
    d = 0.5 * v @ np.diag(w ** -0.5) @ v.T
    quad, trace = trace_norm_quadratic(x, m, eps_rel)
    np.testing.assert_allclose(quad, x.T @ d @ x, rtol=1e-8, atol=1e-8)
    assert trace == pytest.approx(np.linalg.svd(m, compute_uv=False).sum())


def test_knn_graph_against_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    g = knn_graph(x, 3, chunk=7).toarray()
    dist = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    near = np.zeros((30, 30))
    near[np.repeat(np.arange(30), 3), np.argsort(dist, axis=1)[:, :3].ravel()] = 1
    np.testing.assert_array_equal(g, np.maximum(near, near.T))
    assert scipy.sparse.issparse(knn_graph(x, 3))


def test_label_graph_products_against_dense_graph():
    rng = np.random.default_rng(0)
    labels = (rng.random((25, 4)) < 0.3).astype(float)
    x1, x2 = rng.normal(size=(25, 3)), rng.normal(size=(25, 2))
    w = ((labels @ labels.T) > 0).astype(float)
    cross, rows = label_graph_products(x1, x2, labels)
    np.testing.assert_allclose(cross, x1.T @ w @ x2, atol=1e-10)
    np.testing.assert_allclose(rows, w.sum(1))


def test_jfssl_graph_quadratic_equals_dense_laplacian_form():
    rng = np.random.default_rng(1)
    n = 20
    labels = (rng.random((n, 3)) < 0.4).astype(float)
    x1, x2 = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    w11, w22 = knn_graph(x1, 2).toarray(), knn_graph(x2, 2).toarray()
    w12 = ((labels @ labels.T) > 0).astype(float)
    w11, w22, w12 = w11 / w11.sum(1).mean(), w22 / w22.sum(1).mean(), w12 / w12.sum(1).mean()
    w = np.block([[w11, w12], [w12.T, w22]])
    lap = np.diag(w.sum(1)) - w
    x = np.block([[x1, np.zeros((n, 2))], [np.zeros((n, 3)), x2]])
    np.testing.assert_allclose(graph_quadratic(x1, x2, labels, 2), x.T @ lap @ x, atol=1e-10)


def regression_data(seed=0):
    """Labels explained by the first 6 features of each view; the other features are noise."""
    rng = np.random.default_rng(seed)
    n, c = 400, 4
    y = (rng.random((n, c)) < 0.35).astype(float)
    xa = np.hstack([y @ rng.normal(size=(c, 6)) + 0.4 * rng.normal(size=(n, 6)), rng.normal(size=(n, 6))])
    xb = np.hstack([y @ rng.normal(size=(c, 6)) + 0.4 * rng.normal(size=(n, 6)), rng.normal(size=(n, 6))])
    std = lambda a: (a - a.mean(0)) / a.std(0, ddof=1)  # noqa: E731
    return std(xa), std(xb), y


def test_lcfs_without_regularisation_is_least_squares():
    xa, xb, y = regression_data()
    yc = y - y.mean(0)
    u, v, _ = fit_lcfs(xa, xb, yc, lambda_trace=0.0, lambda_l21=0.0, iterations=2, hq_eps=1e-4)
    np.testing.assert_allclose(u, np.linalg.lstsq(xa, yc, rcond=None)[0], atol=1e-5)
    np.testing.assert_allclose(v, np.linalg.lstsq(xb, yc, rcond=None)[0], atol=1e-5)


def test_lcfs_objective_decreases_and_l21_selects_the_informative_features():
    xa, xb, y = regression_data()
    yc = y - y.mean(0)
    u, v, history = fit_lcfs(xa, xb, yc, lambda_trace=0.05, lambda_l21=0.1, iterations=15, hq_eps=1e-6)
    assert all(b <= a + 1e-6 for a, b in zip(history, history[1:]))
    assert history[-1] == pytest.approx(lcfs_objective(xa, xb, yc, u, v, 0.05, 0.1))
    for w in (u, v):
        rows = np.linalg.norm(w, axis=1)
        assert rows[:6].min() > 5 * rows[6:].max()


def test_jfssl_objective_decreases_and_selects_features():
    xa, xb, y = regression_data(1)
    u1, u2, history = fit_jfssl(xa, xb, y - y.mean(0), y, lambda_l21=0.1, lambda_graph=0.05, knn=5,
                                iterations=15, hq_eps=1e-6)
    assert all(b <= a + 1e-6 for a, b in zip(history, history[1:]))
    for w in (u1, u2):
        rows = np.linalg.norm(w, axis=1)
        assert rows[:6].min() > 5 * rows[6:].max()


def test_graph_term_pulls_label_sharing_items_together():
    xa, xb, y = regression_data(2)
    yc = y - y.mean(0)

    def cross_gap(lam):
        u1, u2, _ = fit_jfssl(xa, xb, yc, y, lambda_l21=0.0, lambda_graph=lam, knn=5, iterations=1, hq_eps=1e-6)
        za, zb = xa @ u1, xb @ u2
        w = (y @ y.T) > 0
        d = ((za[:, None] - zb[None]) ** 2).sum(-1)
        return d[w].mean() / (za.var(0).sum() + zb.var(0).sum())

    assert cross_gap(1.0) < cross_gap(0.0)
