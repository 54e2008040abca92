"""metrics shared by paperlab projects."""
