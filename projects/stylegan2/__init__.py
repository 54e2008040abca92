"""StyleGAN2 training (Karras et al., CVPR 2020) with rosinality/stylegan2-pytorch's recipe; see README.md."""
