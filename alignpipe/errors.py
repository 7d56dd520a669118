"""Errors meant for users: cli.py prints their message and exits with code 2, without a traceback."""


class AlignpipeError(Exception):
    """A problem the user can fix: bad recipe, bad data, missing file, refused overwrite."""
