"""The shared kit for people-facing pages: an aiohttp base app (`app.create_base_app`), its runtime
(`runtime.PageRuntime`), languages and message catalogues (`i18n`), Jinja2 rendering and the one
stylesheet (`rendering`), security headers, sessions and CSRF (`security`), bounded form parsing
(`forms`), and a rate limiter (`ratelimit`)."""
