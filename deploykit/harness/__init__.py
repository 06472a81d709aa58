"""Harness: latency benchmarks, cross-backend parity, and the reports (JSON, Markdown, PNG) they feed."""
