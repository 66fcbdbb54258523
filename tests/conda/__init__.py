"""Tests that need real conda (they skip with a reason where it is absent)."""
