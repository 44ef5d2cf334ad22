"""Validators shared by several apps' models."""

from django.core.validators import RegexValidator

env_var_name = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$",
    "Give the name of an environment variable (letters, digits and underscores), not its value.",
)
