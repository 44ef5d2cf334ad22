"""exoclaw's URLs plus /bare/: a CSRF-exempt async view that reads the body and answers JSON, the
floor of a Django POST on the same daphne (bench/webhooks.py)."""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from exoclaw.urls import urlpatterns as exoclaw_urlpatterns


@csrf_exempt
async def bare(request):
    return JsonResponse({"ok": True, "bytes": len(request.body)})


urlpatterns = [*exoclaw_urlpatterns, path("bare/", bare)]
