"""A whole-system fault soak: `make soak` runs it long, `make test` runs it short
(tests/soak/test_soak.py). See docs/soak.md."""
