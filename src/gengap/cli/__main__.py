"""``python -m gengap.cli`` runs the gengap command."""

from gengap.cli.app import main

main()
