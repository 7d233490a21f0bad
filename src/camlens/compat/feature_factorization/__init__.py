"""``pytorch_grad_cam.feature_factorization`` → camlens (module
``deep_feature_factorization``)."""
