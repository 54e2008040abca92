"""data shared by paperlab projects."""
