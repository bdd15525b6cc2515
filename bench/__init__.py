"""pytest-benchmark suites: avsf vs pytorchvideo, data loaders (see docs/performance.md)."""
