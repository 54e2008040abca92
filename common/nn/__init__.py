"""nn shared by paperlab projects."""
