"""`python -m privacyctl ...`."""

from privacyctl.main import app

if __name__ == "__main__":
    app(prog_name="privacyctl")
