"""Region features: detectors, RoI selection and the Zarr feature store.

Modules:
  images      decode an image file to 8-bit RGB, converting or refusing unusual inputs by name
  positions   the 5-d position feature of a box
  selection   per-class NMS and the fixed-36 RoI rule of papers/001
  rcnn_parts  small torchvision-compatible parts (fixed anchors, legacy box coder, RoI pooler, RPN head)
  regions     run any torchvision Faster R-CNN up to per-proposal features and class scores
  butd        the bottom-up-attention ResNet-101 C4 detector
  convert     load the published bottom-up-attention checkpoints into `butd`
  weights     locating downloaded weights (registry source `weights`) and checking their hash
  coco_frcnn  torchvision's COCO Faster R-CNN (ResNet-50 FPN v2) from a local weights file
  shapes_frcnn the small Faster R-CNN trained on the embedded `shapes` dataset
  train       training and evaluating the shapes detector
  detectors   detector names -> loaded models, their class names and weights hash
  schema      defaults of the `extract` / `detector` params (torch-free)
  settings    the same params checked and typed; which detector a dataset uses
  store       the Zarr v3 feature store: resumable writer and `FeatureStore` reader
  extract     batched extraction from a prepared table into the store
"""
