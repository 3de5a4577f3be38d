#!/usr/bin/env bash
# The GPU suite's entry point (what a GPU session runs first): the suite itself lives with the
# maintainers' tooling in scripts/maint/. Every argument passes through (--rehearse, --call, --plan).
exec bash "$(dirname "$0")/maint/gpu_suite.sh" "$@"
