"""Tests; a package so that tests/conda/ does not shadow the real conda module."""
