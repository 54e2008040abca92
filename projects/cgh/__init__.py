"""CGH (WACV 2024): cross-context self-supervised learning between global and hypercolumn features."""
