"""One package per reimplemented paper."""
