"""The worker: claims jobs one at a time per slot, runs their tasks, heartbeats, shuts down gracefully."""
