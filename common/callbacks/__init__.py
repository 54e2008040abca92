"""callbacks shared by paperlab projects."""
