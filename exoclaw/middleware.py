"""A Content-Security-Policy for the admin: its pages (and the session browser's) load only their own
scripts and styles and talk only to their own server, so an injected tag runs nothing."""

from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware

ADMIN_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)
ADMIN_PREFIX = "/admin/"


def _with_policy(request, response):
    if request.path.startswith(ADMIN_PREFIX):
        response.headers.setdefault("Content-Security-Policy", ADMIN_CSP)
    return response


@sync_and_async_middleware
def admin_csp(get_response):
    if iscoroutinefunction(get_response):

        async def middleware(request):
            return _with_policy(request, await get_response(request))

    else:

        def middleware(request):
            return _with_policy(request, get_response(request))

    return middleware
