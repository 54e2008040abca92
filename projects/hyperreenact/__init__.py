"""HyperReenact (ICCV 2023): one-shot face reenactment by a hypernetwork that offsets StyleGAN2 weights."""
