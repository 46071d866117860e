"""Throwaway local services for tests and the demo: PostgreSQL and a Kubernetes control plane."""
