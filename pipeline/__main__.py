"""`python -m pipeline` runs the lambda-images command."""

from .cli import main

main()
