"""The generic experiment tree: any ImageFolder dataset (GRADIA's and PIM's layout)."""
