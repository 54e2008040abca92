"""Face networks shared by StyleMask and HyperReenact: detection/alignment, ArcFace, DECA + FLAME, LPIPS."""
