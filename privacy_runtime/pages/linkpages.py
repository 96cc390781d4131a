"""Pages a stream service shows a person who follows a link from an email (the unsubscribe link, the
export download link): the kit's layout, stylesheet, languages and security headers, on an ApiView.

These pages carry no session and no CSRF token: the signed or random token in the link is the whole
authority, and a POST without it can do nothing. What they share with the privacy center and the office
is the look, the languages and the headers (a strict Content-Security-Policy: no script at all).

Links in emails must survive link scanners, which fetch (GET or HEAD) every URL in a message: a GET
or HEAD only shows a page; the page's button (a POST) acts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from privacy_runtime import vocabulary
from privacy_runtime.pages.i18n import Catalogue, choose_language
from privacy_runtime.pages.rendering import STYLESHEET, environment, kit_catalogue, page_context
from privacy_runtime.pages.security import security_headers

if TYPE_CHECKING:
    from privacy_runtime.service import ServiceRuntime
from privacy_runtime.web import ApiView, Request, Response, Routes

#: Where a link page's stylesheet is, relative to the page: beside it, under the same path prefix, so
#: the public ingress (which routes only the links' prefixes to these services) serves it too.
STYLESHEET_HREF = "static/pages.css"


class LinkPages:
    """The templates and texts of one service's link pages."""

    def __init__(self, templates: Path, messages: Mapping[str, Mapping[str, str]], *, contact_email: str,
                 public_url: str, privacy_center_url: str):
        self.env: jinja2.Environment = vocabulary.install(environment(templates))
        self.catalogue: Catalogue = kit_catalogue({k: dict(v) for k, v in messages.items()})
        self.contact_email = contact_email
        self.https = public_url.lower().startswith("https://")
        self.privacy_center_url = privacy_center_url

    def language(self, request: Request, preferred: object = None) -> str:
        """`?lang=` (the visible switch), then the language the link was sent in, then the browser's."""
        query = request.query.get("lang")
        return choose_language(query, preferred if isinstance(preferred, str) else None,
                               request.headers.get("Accept-Language"))

    def text(self, lang: str, key: str, **values: object) -> str:
        return self.catalogue.text(lang, key, **values)

    def render(self, template: str, lang: str, **values: Any) -> str:
        """The language switch (`?lang=`) and the stylesheet are relative links, so the page works under
        any path prefix an ingress adds."""
        context = page_context(self.catalogue, lang, path="", contact_email=self.contact_email,
                               stylesheet_url=STYLESHEET_HREF)
        context.update(locale=lang, privacy_center_url=self.privacy_center_url, **values)
        return self.env.get_template(template).render(**context)

    def headers(self) -> dict[str, str]:
        return security_headers(https=self.https)


class PageView(ApiView):
    """An endpoint that answers a person with a page (HTML, the kit's headers)."""

    pages: LinkPages

    def page(self, body: str, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        return self.html(body, status=status, headers={**self.pages.headers(), **(headers or {})})


def register_stylesheet(routes: Routes, runtime: ServiceRuntime, under: str) -> None:
    """Serve the kit's one stylesheet beside the pages under `under` (e.g. /v1/unsubscribe), so the
    pages' strict CSP (`style-src 'self'`) allows it and the public ingress routes it."""

    @routes(runtime, f"{under.rstrip('/')}/{STYLESHEET_HREF}", "stylesheet")
    class Stylesheet(ApiView):
        async def get(self, request: Request) -> Response:
            return self.bytes(STYLESHEET.read_bytes(), content_type="text/css",
                              headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
