"""The benchmarks run on demand (``python3 tasks.py bench``), never as tests."""

collect_ignore_glob = ["*"]
