"""The label-wise baselines of papers/000 Table 1, one module per method.

Closed-form / iterative linear methods on pre-pooled features (fitted once, `closed_form.py`):
- `cca`: canonical correlation analysis (scikit-learn's CCA), unsupervised.
- `lcfs`: coupled linear regression to labels with l21 and trace-norm terms (Wang et al., ICCV 2013).
- `jfssl`: joint feature selection and subspace learning with a multimodal graph (Wang et al., TPAMI 2016).
Gradient methods trained by `pipeline.training.loop`:
- `dcca`: deep CCA, two networks trained on the total-correlation objective (Andrew et al., ICML 2013).
- `dscmr`: label-space + common-space discrimination and modality invariance (Zhen et al., CVPR 2019).
- `scml`: one unified network learned from the modalities in sequence, meta-learned (Song & Tan, 2019).
- `vilbert`: a two-stream co-attentional transformer scoring pairs, trained from scratch (Lu et al., 2019).
Shared pieces: `params` (the torch-free parameter schema), `linalg` (numpy/torch linear algebra),
`inputs` (pooled RoI features, text features and encoders).

This file stays free of imports: `pipeline.params` reads `params` without importing torch.
"""
