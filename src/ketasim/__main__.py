"""``python -m ketasim`` runs the command line."""

from .cli import main

main()
