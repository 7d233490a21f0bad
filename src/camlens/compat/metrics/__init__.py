"""``pytorch_grad_cam.metrics`` → camlens: upstream's metric modules at their paths
(``arcc``, ``cam_mult_image``, ``perturbation_confidence``, ``road``)."""
