"""Example tasks for a custom pgjobs worker image."""
