"""Command modules: each registers its commands on varctl.cli.app. Bodies stay thin."""
