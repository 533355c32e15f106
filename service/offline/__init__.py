"""Offline work on whole projects: `prompter label` (label every task) and `prompter eval` (measure prompts)."""
