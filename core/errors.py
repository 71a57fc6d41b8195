"""User-facing errors: one line that names the file, field or flag and what was expected."""


class UserError(Exception):
    """Bad input from the user. CLIs print `error: <message>` and exit with status 2."""


class DataError(UserError):
    """A data set on disk is missing, malformed or inconsistent."""


class ConfigError(UserError):
    """A configuration or flag value is not acceptable."""


def cli_main(fn):
    """Run `fn()` as a CLI entry point: UserError becomes one stderr line and exit status 2."""
    import sys

    try:
        rc = fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(rc or 0)
