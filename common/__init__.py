"""Pieces shared by two or more paperlab projects (nothing paper-specific)."""

from common.errors import install_excepthook as _install_excepthook

# Every entry point imports common: uncaught user errors print their message alone (see common.errors).
_install_excepthook()
